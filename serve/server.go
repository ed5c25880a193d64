package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/sli2vol/sli2vol/infer"
)

// Options configure a Server.
type Options struct {
	Job        *infer.Job // the loaded model that runs every propagation
	Page       fs.FS      // the web page, served at / (index.html, assets/...)
	DataRoot   string     // folder whose volumes clients may open by relative path; "" = none
	Token      string     // required on every request when set (see checkToken)
	CORSOrigin string     // the one origin allowed to call the API cross-origin; "" = none
	Limits     Limits     // zero fields take DefaultLimits' (MaxVoxels: the job's config)
	Info       Info       // what /api/info reports besides the job's own settings
	Clock      func() time.Time
	TempDir    string    // parent of the server's scratch folder (zip uploads); "" = the OS's
	Log        io.Writer // server errors and panics; nil = discarded
}

// Info names the binary and the model in /api/info.
type Info struct {
	Version string
	Model   string // the run folder's name
}

// Limits bound what clients may make the server hold.
type Limits struct {
	MaxUploadBytes int64         // request body of an upload or a job
	MaxVoxels      int64         // per volume, checked from the header (limits.max_voxels)
	MaxSessions    int           // live sessions; a new one evicts the least recently used
	MaxStoredBytes int64         // volumes and masks of every session; LRU volumes evicted
	SessionTTL     time.Duration // a session unused this long expires (not while a job runs)
	MaxZipBytes    int64         // uncompressed bytes of a zipped DICOM series
	MaxZipFiles    int           // files in a zipped DICOM series
	MaxQueuedJobs  int           // jobs queued or running at once, over all sessions
}

// DefaultLimits suit one workstation: a 512×512×300 CT (315 MB as float32) fits many times.
var DefaultLimits = Limits{
	MaxUploadBytes: 1 << 30, MaxSessions: 32, MaxStoredBytes: 8 << 30, SessionTTL: time.Hour,
	MaxZipFiles: 10000, MaxQueuedJobs: 64,
}

// withDefaults fills zero fields; MaxVoxels comes from the job's config, MaxZipBytes is four
// times the upload limit (DICOM series compress about two- to three-fold).
func (l Limits) withDefaults(j *infer.Job) Limits {
	d := DefaultLimits
	d.MaxVoxels = j.Cfg.VolumeLimits().MaxVoxels
	set := func(v *int64, def int64) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&l.MaxUploadBytes, d.MaxUploadBytes)
	set(&l.MaxVoxels, d.MaxVoxels)
	set(&l.MaxStoredBytes, d.MaxStoredBytes)
	set(&l.MaxZipBytes, 4*l.MaxUploadBytes)
	if l.MaxSessions <= 0 {
		l.MaxSessions = d.MaxSessions
	}
	if l.SessionTTL <= 0 {
		l.SessionTTL = d.SessionTTL
	}
	if l.MaxZipFiles <= 0 {
		l.MaxZipFiles = d.MaxZipFiles
	}
	if l.MaxQueuedJobs <= 0 {
		l.MaxQueuedJobs = d.MaxQueuedJobs
	}
	return l
}

// Server is the HTTP handler of `sli2vol serve`. Close it to cancel its jobs and free its
// scratch folder.
type Server struct {
	opts    Options
	lim     Limits
	root    string // DataRoot with symlinks resolved
	tmp     string // scratch folder, removed by Close
	handler http.Handler
	log     *log.Logger
	now     func() time.Time

	mu       sync.Mutex // guards everything below, and every session, volume and job
	sessions map[string]*session
	stored   int64  // bytes of every volume and mask held
	queue    []*job // FIFO of queued jobs for the worker
	active   int    // jobs queued or running

	wake   chan struct{} // a job was queued
	ctx    context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
}

// New checks the options, creates the scratch folder and starts the device's worker.
func New(opts Options) (*Server, error) {
	if opts.Job == nil || opts.Job.Cfg == nil || opts.Job.Net == nil {
		return nil, errors.New("serve: no model (Options.Job with its config and network)")
	}
	if opts.Page == nil {
		return nil, errors.New("serve: no page (Options.Page)")
	}
	s := &Server{opts: opts, lim: opts.Limits.withDefaults(opts.Job), now: opts.Clock,
		sessions: map[string]*session{}, wake: make(chan struct{}, 1)}
	if s.now == nil {
		s.now = time.Now
	}
	w := opts.Log
	if w == nil {
		w = io.Discard
	}
	s.log = log.New(w, "serve: ", log.LstdFlags)
	if opts.DataRoot != "" {
		root, err := resolveRoot(opts.DataRoot)
		if err != nil {
			return nil, err
		}
		s.root = root
	}
	tmp, err := os.MkdirTemp(opts.TempDir, "sli2vol-serve-")
	if err != nil {
		return nil, fmt.Errorf("serve: scratch folder: %w", err)
	}
	s.tmp = tmp
	s.handler = s.middleware(s.routes())
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.wg.Add(2)
	go s.worker()
	go s.sweeper()
	return s, nil
}

// resolveRoot is the data root as an absolute path without symlinks, which must be a folder.
func resolveRoot(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return "", fmt.Errorf("serve: data root %s: %w", dir, err)
	}
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		return "", fmt.Errorf("serve: data root %s is not a folder", dir)
	}
	return abs, nil
}

// Close cancels every queued and running job, ends the event streams, waits for the worker
// and removes the scratch folder. Safe to call more than once.
func (s *Server) Close() error {
	s.closed.Do(func() {
		s.mu.Lock()
		for _, ss := range s.sessions {
			s.dropSession(ss)
		}
		s.mu.Unlock()
		s.stop()
		s.wg.Wait()
		os.RemoveAll(s.tmp)
	})
	return nil
}

// ServeHTTP serves the page and the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// apiFunc is an API handler; a returned error becomes its JSON error answer.
type apiFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) api(h apiFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			if statusOf(err) >= 500 {
				s.log.Printf("%s %s: %v", r.Method, r.URL.Path, err)
			}
			writeError(w, err)
		}
	}
}

func (s *Server) routes() *http.ServeMux {
	m := http.NewServeMux()
	const sess, vol, job = "/api/sessions/{sid}", "/api/sessions/{sid}/volumes/{vid}", "/api/sessions/{sid}/jobs/{jid}"
	m.HandleFunc("GET /api/info", s.api(s.handleInfo))
	m.HandleFunc("GET /api/data", s.api(s.handleData))
	m.HandleFunc("POST /api/sessions", s.api(s.handleNewSession))
	m.HandleFunc("GET "+sess, s.api(s.handleGetSession))
	m.HandleFunc("DELETE "+sess, s.api(s.handleDeleteSession))
	m.HandleFunc("POST "+sess+"/volumes", s.api(s.handleUpload))
	m.HandleFunc("POST "+sess+"/volumes/open", s.api(s.handleOpen))
	m.HandleFunc("GET "+vol, s.api(s.handleGetVolume))
	m.HandleFunc("DELETE "+vol, s.api(s.handleDeleteVolume))
	m.HandleFunc("GET "+vol+"/image.nii.gz", s.api(s.handleImage))
	m.HandleFunc("POST "+vol+"/jobs", s.api(s.handleNewJob))
	m.HandleFunc("GET "+job, s.api(s.handleGetJob))
	m.HandleFunc("GET "+job+"/events", s.api(s.handleEvents))
	m.HandleFunc("GET "+job+"/mask.nii.gz", s.api(s.handleMask))
	m.HandleFunc("DELETE "+job, s.api(s.handleDeleteJob))
	m.HandleFunc("/api/", s.api(func(w http.ResponseWriter, r *http.Request) error {
		return fail(http.StatusNotFound, "no API endpoint %s %s", r.Method, r.URL.Path)
	}))
	// The page asks for its scripts and styles as assets/NAME; the bundle holds them at its root.
	files := http.FileServerFS(s.opts.Page)
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/assets/") {
			http.StripPrefix("/assets", files).ServeHTTP(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, fail(http.StatusMethodNotAllowed, "%s %s: the page is read-only", r.Method, r.URL.Path))
			return
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		page.ServeHTTP(w, r)
	})
	return m
}

// middleware: a panic answers 500 (the server keeps serving), then CORS, then the token.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Printf("panic in %s %s: %v\n%s", r.Method, r.URL.Path, v, debug.Stack())
				writeError(w, fail(http.StatusInternalServerError, "internal error (%v)", v))
			}
		}()
		if s.cors(w, r) {
			return
		}
		if err := s.checkToken(w, r); err != nil {
			writeError(w, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// handleInfo reports the model and the limits a client should respect before uploading.
func (s *Server) handleInfo(w http.ResponseWriter, r *http.Request) error {
	j := s.opts.Job
	dev := j.Device
	if dev == "" {
		dev = "cpu" // what libtorch uses when no device is named
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"version": s.opts.Info.Version, "model": s.opts.Info.Model, "mode": string(j.Cfg.Model.Mode),
		"device": dev, "has_data": s.root != "", "max_upload_bytes": s.lim.MaxUploadBytes,
		"max_voxels": s.lim.MaxVoxels,
	})
	return nil
}
