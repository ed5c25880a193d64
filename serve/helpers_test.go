package serve

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/infer"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/runs"
	"github.com/sli2vol/sli2vol/torchx"
)

// phantomShape is small enough that a propagation takes well under a second on one core.
var phantomShape = [3]int{48, 40, 20}

var (
	modelOnce sync.Once
	testModel *models.CFN
	testCfg   *configs.Config
)

// testJob is the cpu-small Sli2Vol+ network, untrained (its weights seeded): the server must
// give what infer.Job.Run gives, whatever the weights.
func testJob(t testing.TB) *infer.Job {
	modelOnce.Do(func() {
		c, err := configs.Load("../configs/cpu-small.yaml")
		if err != nil {
			t.Fatal(err)
		}
		torchx.SetNumThreads(1)
		torchx.ManualSeed(1)
		m, err := runs.NewCFN(c.Model)
		if err != nil {
			t.Fatal(err)
		}
		models.SetTraining(m, false)
		// One slice per chain and round: progress (and the gate's count of affinity calls)
		// advances slice by slice, as a long job's does.
		c.Infer.EncodeBatch = 2
		testModel, testCfg = m, c
	})
	if testModel == nil {
		t.Fatal("no test model")
	}
	return &infer.Job{Cfg: testCfg, Net: testModel, Device: "cpu", Log: io.Discard}
}

// phantom is a labelled test volume (seeded) with its geometry's header.
type phantom struct {
	img []float32
	lab []int32
	g   data.Geometry
}

func newPhantom(seed int64) phantom {
	img, lab, g := data.Phantom(phantomShape, seed)
	return phantom{img, lab, g}
}

// niiGz encodes the phantom's image as .nii.gz.
func (p phantom) niiGz(t testing.TB) []byte {
	return gzipped(t, func(w io.Writer) error { return data.EncodeImage(w, p.img, &p.g) })
}

// annotation is a label volume with the truth on the given anatomical slices only.
func (p phantom) annotation(t testing.TB, slices ...int) []byte {
	s, _ := data.NewSlicer(&p.g, -1)
	ann := make([]int32, len(p.lab))
	for _, n := range slices {
		data.SetSlice(s, ann, n, data.Slice(s, p.lab, n))
	}
	return gzipped(t, func(w io.Writer) error { return data.EncodeLabels(w, ann, &p.g) })
}

func gzipped(t testing.TB, enc func(io.Writer) error) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if err := enc(zw); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return b.Bytes()
}

// fakeClock is a settable clock for expiry tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var testPage = fstest.MapFS{"index.html": {Data: []byte("<!doctype html><title>sli2vol</title>")}}

// start runs a Server behind an httptest server; both are closed with the test.
func start(t testing.TB, o Options) (*Server, *client) {
	if o.Job == nil {
		o.Job = testJob(t)
	}
	if o.Page == nil {
		o.Page = testPage
	}
	o.TempDir = t.TempDir()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	sends := &sendLog{}
	hs := httptest.NewServer(sends.wrap(s))
	t.Cleanup(func() { s.Close(); hs.Close() })
	return s, &client{t: t, base: hs.URL, token: o.Token, sends: sends}
}

// sendLog records when the server wrote each progress event, on the server's side of the
// connection: the gaps between them are the throttle's own, whatever the client's scheduling.
type sendLog struct {
	mu sync.Mutex
	at []time.Time
}

func (l *sendLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&loggedWriter{ResponseWriter: w, log: l}, r)
	})
}

// progressTimes: the write times of all progress events so far.
func (l *sendLog) progressTimes() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.at)
}

type loggedWriter struct {
	http.ResponseWriter
	log *sendLog
}

func (w *loggedWriter) Write(b []byte) (int, error) {
	if bytes.HasPrefix(b, []byte("event: progress\n")) {
		w.log.mu.Lock()
		w.log.at = append(w.log.at, time.Now())
		w.log.mu.Unlock()
	}
	return w.ResponseWriter.Write(b)
}

func (w *loggedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// client makes API calls and decodes JSON answers.
type client struct {
	t     testing.TB
	base  string
	token string
	sends *sendLog
}

type reply struct {
	status int
	body   []byte
	header http.Header
}

func (r reply) json(t testing.TB) map[string]any {
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("answer %d is not JSON: %q", r.status, r.body)
	}
	return m
}

func (c *client) do(method, path string, body []byte) reply {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, b, resp.Header}
}

// must is do, failing the test unless the status is want; it returns the JSON answer.
func (c *client) must(want int, method, path string, body []byte) map[string]any {
	c.t.Helper()
	r := c.do(method, path, body)
	if r.status != want {
		c.t.Fatalf("%s %s: %d %s, want %d", method, path, r.status, r.body, want)
	}
	if len(r.body) == 0 || r.header.Get("Content-Type") != "application/json" {
		return nil
	}
	return r.json(c.t)
}

func (c *client) session() string {
	return c.must(http.StatusCreated, "POST", "/api/sessions", nil)["session"].(string)
}

func (c *client) upload(sid, name string, body []byte) map[string]any {
	return c.must(http.StatusCreated, "POST", "/api/sessions/"+sid+"/volumes?name="+name, body)
}

// wait polls a job until it is final and returns its status.
func (c *client) wait(sid, jid string) map[string]any {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		st := c.must(http.StatusOK, "GET", "/api/sessions/"+sid+"/jobs/"+jid, nil)
		if jobState(st["state"].(string)).final() {
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("job %s did not finish", jid)
	return nil
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	name string
	data map[string]any
}

// events reads a job's event stream to its end.
func (c *client) events(sid, jid string) []sseEvent {
	var out []sseEvent
	for e := range c.stream(sid, jid) {
		out = append(out, e)
	}
	return out
}

// stream opens a job's event stream; its events arrive on the channel, closed at the end.
func (c *client) stream(sid, jid string) <-chan sseEvent {
	c.t.Helper()
	resp, err := http.Get(c.base + "/api/sessions/" + sid + "/jobs/" + jid + "/events?token=" + c.token)
	if err != nil {
		c.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		resp.Body.Close()
		c.t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := make(chan sseEvent, 1000)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		var name string
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				name = v
			} else if v, ok := strings.CutPrefix(line, "data: "); ok {
				var d map[string]any
				if json.Unmarshal([]byte(v), &d) != nil {
					d = map[string]any{"unparsed": v}
				}
				out <- sseEvent{name, d}
			}
		}
	}()
	return out
}

// gate wraps the network and holds the propagation at its at-th affinity (mid-way through a
// job) until released: a stand-in for a slow job that makes cancellation and event order
// deterministic. It computes what the network computes.
type gate struct {
	infer.Network
	at      int32
	calls   atomic.Int32
	reached chan struct{}
	release chan struct{}
}

func (g *gate) Affinity(q, k torchx.Tensor) torchx.Tensor {
	if g.calls.Add(1) == g.at {
		close(g.reached)
		<-g.release
	}
	return g.Network.Affinity(q, k)
}

// gatedJob is testJob with its network behind a gate at the at-th affinity.
func gatedJob(t testing.TB, at int32) (*infer.Job, *gate) {
	j := testJob(t)
	g := &gate{Network: j.Net, at: at, reached: make(chan struct{}), release: make(chan struct{})}
	j.Net = g
	return j, g
}

// waitFor fails the test unless c is closed within a minute.
func waitFor(t testing.TB, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(time.Minute):
		t.Fatalf("timed out waiting for %s", what)
	}
}
