// Package filehash gives the SHA-256 of input files for run provenance, remembering each
// file's digest by path, size and modification time (in the user's cache folder), so that
// a dataset is hashed once, not at every run.
package filehash

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/sli2vol/sli2vol/internal/atomicfile"
)

// Digest is a file's (or a folder's) size and SHA-256.
type Digest struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Cache remembers digests; the zero value works without a file.
type Cache struct {
	Path  string // "" : in memory only
	mu    sync.Mutex
	m     map[string]Digest
	dirty bool
}

// Default is the cache in the user's cache folder (sli2vol/sha256.json), or in memory when
// there is none.
func Default() *Cache {
	dir, err := os.UserCacheDir()
	if err != nil {
		return &Cache{}
	}
	return &Cache{Path: filepath.Join(dir, "sli2vol", "sha256.json")}
}

func (c *Cache) load() {
	if c.m != nil {
		return
	}
	c.m = map[string]Digest{}
	if c.Path == "" {
		return
	}
	if b, err := os.ReadFile(c.Path); err == nil {
		json.Unmarshal(b, &c.m) // a damaged cache is only slower: hashes are recomputed
	}
}

// Save writes the cache back when it learnt something (atomically; a failure is returned
// but costs only the next run's time).
func (c *Cache) Save() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.dirty || c.Path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(c.Path), 0o755); err != nil {
		return err
	}
	b, err := json.Marshal(c.m)
	if err != nil {
		return err
	}
	c.dirty = false
	return atomicfile.WriteFile(c.Path, b)
}

// Sum is path's digest: a file's bytes, or for a folder (a DICOM series) the digest of its
// files' names and digests in name order (hidden files skipped).
func (c *Cache) Sum(path string) (Digest, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Digest{}, err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return Digest{}, err
	}
	if st.IsDir() {
		return c.sumDir(abs)
	}
	key := fmt.Sprintf("%s\x00%d\x00%d", abs, st.Size(), st.ModTime().UnixNano())
	c.mu.Lock()
	c.load()
	d, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return d, nil
	}
	if d, err = sumFile(abs); err != nil {
		return Digest{}, err
	}
	c.mu.Lock()
	c.m[key], c.dirty = d, true
	c.mu.Unlock()
	return d, nil
}

func sumFile(path string) (Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return Digest{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Digest{}, fmt.Errorf("%s: %w", path, err)
	}
	return Digest{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

func (c *Cache) sumDir(dir string) (Digest, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return Digest{}, err
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	h := sha256.New()
	var size int64
	for _, n := range names {
		d, err := c.Sum(filepath.Join(dir, n))
		if err != nil {
			return Digest{}, err
		}
		size += d.Size
		fmt.Fprintf(h, "%s %s\n", n, d.SHA256)
	}
	return Digest{Size: size, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}
