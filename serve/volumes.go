package serve

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"path"
	"strings"

	"github.com/sli2vol/sli2vol/data"
)

// volumeInfo describes a volume to the client: what it needs to map its slices onto the
// method's (anatomical slice n is array index n along slice_axis, or slices−1−n if reversed).
type volumeInfo struct {
	Volume    string     `json:"volume"`
	Name      string     `json:"name"`
	Dims      [3]int     `json:"dims"`
	Spacing   [3]float64 `json:"spacing"`
	SliceAxis int        `json:"slice_axis"`
	Plane     string     `json:"plane"`
	Slices    int        `json:"slices"`
	Reversed  bool       `json:"reversed"`
}

// planes name the anatomical plane of slices cut across each world axis (RAS x, y, z).
var planes = [3]string{"sagittal", "coronal", "axial"}

// planeOf is the plane of the slices along array axis a: across the world axis that axis
// mostly points along.
func planeOf(g *data.Geometry, a int) string {
	best, w := -1.0, 0
	for r := 0; r < 3; r++ {
		if v := math.Abs(g.Affine[r][a]); v > best {
			best, w = v, r
		}
	}
	return planes[w]
}

// limitedBody is a request body cut at the upload limit that remembers being cut: a reader
// may report the cut as a truncated file, and the client must hear 413, not 400.
type limitedBody struct {
	r     io.Reader
	limit int64
	cut   bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		b.cut = true
	}
	return n, err
}

// check turns a decoding error into 413 when the body was cut at the limit.
func (b *limitedBody) check(err error) error {
	if err != nil && b.cut {
		return fail(http.StatusRequestEntityTooLarge, "the body is over the server's upload limit of %d bytes", b.limit)
	}
	return err
}

// limitBody refuses a body declared over the upload limit before reading any of it, and
// bounds one of unknown length as it is read.
func (s *Server) limitBody(w http.ResponseWriter, r *http.Request) (*limitedBody, error) {
	if r.ContentLength > s.lim.MaxUploadBytes {
		return nil, fail(http.StatusRequestEntityTooLarge, "the body has %d bytes, over the server's upload limit of %d",
			r.ContentLength, s.lim.MaxUploadBytes)
	}
	return &limitedBody{r: http.MaxBytesReader(w, r.Body, s.lim.MaxUploadBytes), limit: s.lim.MaxUploadBytes}, nil
}

// checkSession answers 404 for an unknown session before a body is read.
func (s *Server) checkSession(r *http.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.sessionOf(r)
	return err
}

// handleUpload reads a volume from the body: NIfTI (.nii or gzipped) or a zipped DICOM series.
func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request) error {
	if err := s.checkSession(r); err != nil {
		return err
	}
	name := uploadName(r.URL.Query().Get("name"))
	body, err := s.limitBody(w, r)
	if err != nil {
		return err
	}
	img, err := s.decodeUpload(name, body)
	if err := body.check(err); err != nil {
		return err
	}
	return s.addVolume(w, r, name, img)
}

// uploadName is the file's base name, for display and error messages only.
func uploadName(q string) string {
	q = path.Base(strings.ReplaceAll(q, "\\", "/"))
	if q == "." || q == "/" || q == "" {
		return "upload"
	}
	return oneLine(q)
}

// handleOpen opens a volume under the data root: {"path": "relative/path"}.
func (s *Server) handleOpen(w http.ResponseWriter, r *http.Request) error {
	if err := s.checkSession(r); err != nil {
		return err
	}
	var req struct {
		Path string `json:"path"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		return fail(http.StatusBadRequest, "body: want JSON {\"path\": \"relative/path\"}: %w", err)
	}
	full, err := s.resolveData(req.Path)
	if err != nil {
		return err
	}
	img, err := data.LoadImage(full, data.Limits{MaxVoxels: s.lim.MaxVoxels})
	if err != nil {
		return fail(statusOf(err), "%s: %s", req.Path, strings.TrimPrefix(err.Error(), full+": "))
	}
	img.Source = req.Path
	return s.addVolume(w, r, req.Path, img)
}

// addVolume prepares img and stores it in the request's session, evicting the least recently
// used volumes when the storage cap needs it.
func (s *Server) addVolume(w http.ResponseWriter, r *http.Request, name string, img *data.Image) error {
	prep, err := s.opts.Job.Prepare(img)
	if err != nil {
		return fail(http.StatusBadRequest, "%s: %w", name, err)
	}
	info := volumeInfo{Name: name, Dims: img.Shape, Spacing: img.Spacing, SliceAxis: prep.Slicer.Axis,
		Plane: planeOf(&img.Geometry, prep.Slicer.Axis), Slices: prep.Slicer.Len(), Reversed: prep.Slicer.Reversed}
	bytes := int64(len(img.Data)) * 4
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, err := s.sessionOf(r)
	if err != nil {
		return err
	}
	if err := s.makeRoom(bytes); err != nil {
		return err
	}
	v := &volume{id: newID(), sess: ss, prep: prep, bytes: bytes, used: ss.used, info: info}
	v.info.Volume = v.id
	ss.volumes[v.id] = v
	s.stored += bytes
	writeJSON(w, http.StatusCreated, v.info)
	return nil
}

func (s *Server) handleGetVolume(w http.ResponseWriter, r *http.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.volumeOf(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v.info)
	return nil
}

// handleDeleteVolume frees a volume, cancelling and forgetting its jobs.
func (s *Server) handleDeleteVolume(w http.ResponseWriter, r *http.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.volumeOf(r)
	if err != nil {
		return err
	}
	s.dropVolume(v)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleImage streams the volume as gzipped float32 NIfTI-1 with the input's geometry (what
// the viewer loads; a DICOM series arrives converted).
func (s *Server) handleImage(w http.ResponseWriter, r *http.Request) error {
	s.mu.Lock()
	v, err := s.volumeOf(r)
	var img *data.Image
	if err == nil {
		img = v.prep.Image // never modified once prepared: read without the lock
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Cache-Control", "no-store")
	gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err := data.EncodeImage(gz, img.Data, &img.Geometry); err != nil {
		s.log.Printf("image of volume %s: %v", v.id, err) // headers are sent: the client sees a cut stream
		return nil
	}
	gz.Close()
	return nil
}
