package serve

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sli2vol/sli2vol/data"
)

// With a token every request needs it: 401 without it or with a wrong one (header, query or
// cookie); 200 with it as a Bearer header or ?token=; the page opened with ?token= sets the
// cookie that its scripts' plain requests carry.
func TestTokenRequired(t *testing.T) {
	_, c := start(t, Options{Token: "s3cret"})
	get := func(path string, h map[string]string) *http.Response {
		req, _ := http.NewRequest("GET", c.base+path, nil)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, tc := range []struct {
		path string
		h    map[string]string
		want int
	}{
		{"/api/info", nil, 401},
		{"/", nil, 401},
		{"/api/info", map[string]string{"Authorization": "Bearer wrong"}, 401},
		{"/api/info?token=s3cret", map[string]string{"Authorization": "Bearer wrong"}, 401},
		{"/api/info?token=s3cre", nil, 401},
		{"/api/info", map[string]string{"Cookie": tokenCookie + "=nope"}, 401},
		{"/api/info", map[string]string{"Authorization": "Bearer s3cret"}, 200},
		{"/api/info?token=s3cret", nil, 200},
		{"/api/info", map[string]string{"Cookie": tokenCookie + "=s3cret"}, 200},
	} {
		if got := get(tc.path, tc.h).StatusCode; got != tc.want {
			t.Errorf("GET %s %v: %d, want %d", tc.path, tc.h, got, tc.want)
		}
	}
	resp := get("/?token=s3cret", nil)
	if ck := resp.Cookies(); resp.StatusCode != 200 || len(ck) != 1 || ck[0].Value != "s3cret" || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("page with ?token=: %d, cookies %v", resp.StatusCode, ck)
	}
	for addr, want := range map[string]bool{"127.0.0.1:8080": false, "localhost:80": false, "[::1]:1": false,
		":8080": true, "0.0.0.0:8080": true, "192.168.1.4:80": true, "example.org:80": true, "nonsense": true} {
		if NeedsToken(addr) != want {
			t.Errorf("NeedsToken(%q) = %v", addr, !want)
		}
	}
}

// No CORS headers unless an origin is configured; then for that origin only, with preflights
// answered (they carry no token).
func TestCORS(t *testing.T) {
	_, plain := start(t, Options{})
	req := func(c *client, method, origin string) *http.Response {
		r, _ := http.NewRequest(method, c.base+"/api/info", nil)
		r.Header.Set("Origin", origin)
		r.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if h := req(plain, "GET", "http://evil.example").Header.Get("Access-Control-Allow-Origin"); h != "" {
		t.Fatalf("CORS header %q without --cors", h)
	}
	_, c := start(t, Options{CORSOrigin: "http://viewer.example", Token: "t"})
	if h := req(c, "OPTIONS", "http://evil.example").Header.Get("Access-Control-Allow-Origin"); h != "" {
		t.Fatalf("CORS header %q for another origin", h)
	}
	resp := req(c, "OPTIONS", "http://viewer.example")
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "http://viewer.example" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := req(c, "GET", "http://viewer.example"); resp.StatusCode != 401 {
		t.Fatalf("a cross-origin request without the token: %d", resp.StatusCode)
	}
}

// panicFS panics when the page is read: a handler bug.
type panicFS struct{}

func (panicFS) Open(string) (fs.File, error) { panic("page bug") }

// A panicking handler answers 500 with a JSON error; the server keeps serving.
func TestPanicIs500(t *testing.T) {
	_, c := start(t, Options{Page: panicFS{}})
	r := c.do("GET", "/index.html", nil)
	if r.status != http.StatusInternalServerError || !strings.Contains(r.json(t)["error"].(string), "page bug") {
		t.Fatalf("panic: %d %s", r.status, r.body)
	}
	c.must(http.StatusOK, "GET", "/api/info", nil)
}

// --data: volumes are listed and opened by relative path; parent components and absolute
// paths are refused (400), a symlink out of the root too (403); a link inside is followed.
func TestDataRoot(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	p := newPhantom(2)
	os.MkdirAll(filepath.Join(root, "sub"), 0o755)
	for _, f := range []string{filepath.Join(root, "sub", "ct.nii.gz"), filepath.Join(outside, "secret.nii.gz")} {
		if err := os.WriteFile(f, p.niiGz(t), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink(filepath.Join(outside, "secret.nii.gz"), filepath.Join(root, "escape.nii.gz"))
	os.Symlink(outside, filepath.Join(root, "outdir"))
	os.Symlink(filepath.Join(root, "sub", "ct.nii.gz"), filepath.Join(root, "inside.nii.gz"))
	_, c := start(t, Options{DataRoot: root})
	list := c.must(http.StatusOK, "GET", "/api/data", nil)["volumes"]
	if b, _ := json.Marshal(list); string(b) != `["sub/ct.nii.gz"]` {
		t.Fatalf("listed %s", b)
	}
	sid := c.session()
	open := func(path string) reply {
		b, _ := json.Marshal(map[string]string{"path": path})
		return c.do("POST", "/api/sessions/"+sid+"/volumes/open", b)
	}
	for path, want := range map[string]int{
		"sub/ct.nii.gz": 201, "inside.nii.gz": 201, "../" + filepath.Base(outside) + "/secret.nii.gz": 400,
		"sub/../../x": 400, filepath.Join(outside, "secret.nii.gz"): 400, "/etc/passwd": 400, "": 400,
		"escape.nii.gz": 403, "outdir/secret.nii.gz": 403, "missing.nii.gz": 404, "sub": 400,
	} {
		r := open(path)
		if r.status != want || r.json(t)["error"] == nil && want != 201 {
			t.Errorf("open %q: %d %s, want %d", path, r.status, r.body, want)
		}
		if !strings.HasPrefix(path, "/") && (strings.Contains(string(r.body), outside) || strings.Contains(string(r.body), root)) {
			t.Errorf("open %q: the answer shows a server path: %s", path, r.body)
		}
	}
	if v := open("sub/ct.nii.gz").json(t); v["name"] != "sub/ct.nii.gz" || v["slices"] != 20.0 {
		t.Fatalf("opened: %v", v)
	}
	_, none := start(t, Options{})
	if b, _ := json.Marshal(none.must(200, "GET", "/api/data", nil)); string(b) != `{"volumes":[]}` {
		t.Fatalf("without --data: %s", b)
	}
}

// countingBody records how much of a request body was read.
type countingBody struct {
	r io.Reader
	n int
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
func (c *countingBody) Close() error { return nil }

// Malformed uploads get a 4xx with a one-line JSON error, and the server goes on serving:
// truncated .nii.gz, garbage, a bad zip, a zip-slip zip; an upload declared over the byte
// limit is refused before any of it is read, one that lies about its length when it passes
// the limit; a header over max_voxels is refused from the header.
func TestBadUploads(t *testing.T) {
	s, c := start(t, Options{Limits: Limits{MaxUploadBytes: 256 << 10, MaxVoxels: 50000}})
	p := newPhantom(4)
	good := p.niiGz(t)
	sid := c.session()
	path := "/api/sessions/" + sid + "/volumes?name=x.nii.gz"
	big := newPhantom(4)
	big.g = data.NewGeometry([3]int{100, 100, 100}, [3]float64{1, 1, 1}, [3]float64{})
	big.img = make([]float32, 1000000)
	for name, tc := range map[string]struct {
		body   []byte
		status int
		says   string
	}{
		"truncated .nii.gz": {good[:len(good)/2], 400, "x.nii.gz"},
		"garbage":           {[]byte("hello, world, this is not a volume at all"), 400, "not a NIfTI file"},
		"bad zip":           {append([]byte("PK\x03\x04"), make([]byte, 100)...), 400, "zip"},
		"zip slip":          {zipOf(t, map[string][]byte{"../../evil.dcm": []byte("x")}), 400, "leaves the archive"},
		"empty zip":         {zipOf(t, map[string][]byte{"dir/.hidden": []byte("x")}), 400, "no files"},
		"no DICOM in zip":   {zipOf(t, map[string][]byte{"a.txt": []byte("x")}), 400, "DICOM"},
		"over max_voxels":   {big.niiGz(t)[:2000], 413, "limits.max_voxels"},
	} {
		r := c.do("POST", path, tc.body)
		msg, _ := r.json(t)["error"].(string)
		if r.status != tc.status || !strings.Contains(msg, tc.says) || strings.Contains(msg, "\n") {
			t.Errorf("%s: %d %q, want %d saying %q", name, r.status, msg, tc.status, tc.says)
		}
		c.upload(sid, "ok.nii.gz", good) // the server keeps serving
	}
	// Declared over the limit: 413 before a byte is read.
	body := &countingBody{r: bytes.NewReader(make([]byte, 300<<10))}
	req := httptest.NewRequest("POST", path, body)
	req.ContentLength = 300 << 10
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge || body.n != 0 {
		t.Fatalf("declared over the limit: %d after reading %d bytes", rec.Code, body.n)
	}
	// Undeclared length (chunked): cut off at the limit, and told so (not "truncated file").
	small, _ := start(t, Options{Limits: Limits{MaxUploadBytes: int64(len(good)) / 2}})
	sreq := httptest.NewRequest("POST", "/api/sessions", nil)
	srec := httptest.NewRecorder()
	small.ServeHTTP(srec, sreq)
	var created map[string]any
	json.Unmarshal(srec.Body.Bytes(), &created)
	req = httptest.NewRequest("POST", "/api/sessions/"+created["session"].(string)+"/volumes", bytes.NewReader(good))
	req.ContentLength = -1
	rec = httptest.NewRecorder()
	small.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked over the limit: %d %s", rec.Code, rec.Body)
	}
}

func zipOf(t testing.TB, files map[string][]byte) []byte {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for name, content := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(content)
	}
	zw.Close()
	return b.Bytes()
}

// Sessions unused for the TTL expire (fake clock); at the session cap the least recently used
// is evicted; at the storage cap the least recently used volume goes (with its jobs).
func TestExpiryAndEviction(t *testing.T) {
	clk := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	vbytes := int64(4 * phantomShape[0] * phantomShape[1] * phantomShape[2])
	s, c := start(t, Options{Clock: clk.now, Limits: Limits{SessionTTL: time.Hour, MaxSessions: 2, MaxStoredBytes: 2*vbytes + vbytes/2}})
	p := newPhantom(6)
	a, b := c.session(), c.session()
	va := c.upload(a, "a.nii.gz", p.niiGz(t))["volume"].(string)
	clk.add(40 * time.Minute)
	vb := c.upload(b, "b.nii.gz", p.niiGz(t))["volume"].(string)
	clk.add(30 * time.Minute) // a unused for 70 min, b for 30
	c.must(http.StatusNotFound, "GET", "/api/sessions/"+a+"/volumes/"+va, nil)
	c.must(http.StatusOK, "GET", "/api/sessions/"+b+"/volumes/"+vb, nil)

	// Session cap 2: a third session evicts the least recently used (b, used before d).
	d := c.session()
	clk.add(time.Minute)
	c.must(http.StatusOK, "GET", "/api/sessions/"+b, nil)
	clk.add(time.Minute)
	c.must(http.StatusOK, "GET", "/api/sessions/"+d, nil)
	e := c.session() // evicts b
	c.must(http.StatusNotFound, "GET", "/api/sessions/"+b, nil)
	c.must(http.StatusOK, "GET", "/api/sessions/"+d, nil)

	// Storage cap 2.5 volumes: the third volume evicts the least recently used one.
	v1 := c.upload(d, "1.nii.gz", p.niiGz(t))["volume"].(string)
	clk.add(time.Second)
	v2 := c.upload(e, "2.nii.gz", p.niiGz(t))["volume"].(string)
	clk.add(time.Second)
	c.must(http.StatusOK, "GET", "/api/sessions/"+d+"/volumes/"+v1, nil) // v1 used after v2
	clk.add(time.Second)
	c.upload(d, "3.nii.gz", p.niiGz(t))
	c.must(http.StatusNotFound, "GET", "/api/sessions/"+e+"/volumes/"+v2, nil)
	c.must(http.StatusOK, "GET", "/api/sessions/"+d+"/volumes/"+v1, nil)
	s.mu.Lock()
	stored := s.stored
	s.mu.Unlock()
	if stored != 2*vbytes {
		t.Fatalf("stored %d bytes, want %d", stored, 2*vbytes)
	}
}
