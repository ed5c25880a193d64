package webui

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"regexp"
	"sort"
	"testing"
)

type provenance struct {
	Esbuild           string            `json:"esbuild"`
	Niivue            string            `json:"niivue"`
	Node              string            `json:"node"`
	PackageLockSHA256 string            `json:"package_lock_sha256"`
	Sources           map[string]string `json:"sources"`
	Outputs           map[string]string `json:"outputs"`
}

// The embedded bundle is what PROVENANCE.json says `make web` built: every output listed,
// hashes equal, nothing unlisted (a hand-edited or half-rebuilt dist fails here).
func TestProvenanceMatchesEmbeddedFiles(t *testing.T) {
	raw, err := fs.ReadFile(FS, "PROVENANCE.json")
	if err != nil {
		t.Fatal(err)
	}
	var p provenance
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatalf("PROVENANCE.json: %v", err)
	}
	version := regexp.MustCompile(`^v?\d+\.\d+\.\d+$`)
	for name, v := range map[string]string{"esbuild": p.Esbuild, "niivue": p.Niivue, "node": p.Node} {
		if !version.MatchString(v) {
			t.Errorf("%s version %q: want an exact version", name, v)
		}
	}
	hexHash := regexp.MustCompile(`^[0-9a-f]{64}$`)
	if !hexHash.MatchString(p.PackageLockSHA256) {
		t.Errorf("package_lock_sha256 %q", p.PackageLockSHA256)
	}
	if len(p.Sources) == 0 {
		t.Error("no sources recorded")
	}
	for _, want := range []string{"index.html", "app.js", "app.css"} {
		if _, ok := p.Outputs[want]; !ok {
			t.Errorf("outputs lack %s", want)
		}
	}
	var embedded []string
	err = fs.WalkDir(FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path == "PROVENANCE.json" {
			return err
		}
		embedded = append(embedded, path)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(embedded)
	if len(embedded) != len(p.Outputs) {
		t.Errorf("embedded files %v, PROVENANCE.json lists %d outputs", embedded, len(p.Outputs))
	}
	for _, name := range embedded {
		want, ok := p.Outputs[name]
		if !ok {
			t.Errorf("%s is embedded but not in PROVENANCE.json", name)
			continue
		}
		b, err := fs.ReadFile(FS, name)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("%s: sha256 %s, PROVENANCE.json says %s (rebuild with make web)", name, got, want)
		}
	}
}

// The page names its assets as the server serves them (GET /assets/...), and carries the ids
// the browser test drives.
func TestIndexReferencesAssets(t *testing.T) {
	b, err := fs.ReadFile(FS, "index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`src="assets/app.js"`, `href="assets/app.css"`, `id="canvas"`, `id="propagate"`,
		`id="progress"`, `id="download"`, `id="volume-list"`, `id="status"`} {
		if !regexp.MustCompile(regexp.QuoteMeta(want)).Match(b) {
			t.Errorf("index.html lacks %s", want)
		}
	}
}
