package filehash

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSumFileAndFolder(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "s", "a.dcm")
	os.MkdirAll(filepath.Dir(a), 0o755)
	os.WriteFile(a, []byte("hello"), 0o644)
	c := &Cache{Path: filepath.Join(dir, "cache.json")}
	d, err := c.Sum(a)
	want := sha256.Sum256([]byte("hello"))
	if err != nil || d.Size != 5 || d.SHA256 != hex.EncodeToString(want[:]) {
		t.Fatalf("%+v %v", d, err)
	}
	// A folder: the digest of "name digest\n" lines.
	f, err := c.Sum(filepath.Dir(a))
	line := sha256.Sum256([]byte("a.dcm " + d.SHA256 + "\n"))
	if err != nil || f.SHA256 != hex.EncodeToString(line[:]) || f.Size != 5 {
		t.Fatalf("folder %+v %v", f, err)
	}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	// Remembered by path, size and time: a reloaded cache answers without reading the file,
	// and a changed file (new time) is hashed again.
	b, _ := os.ReadFile(c.Path)
	os.WriteFile(c.Path, []byte(strings.ReplaceAll(string(b), d.SHA256, "remembered")), 0o644)
	c2 := &Cache{Path: c.Path}
	if d2, err := c2.Sum(a); err != nil || d2.SHA256 != "remembered" {
		t.Fatalf("not answered from the cache: %+v %v", d2, err)
	}
	os.WriteFile(a, []byte("HELLO"), 0o644)
	os.Chtimes(a, time.Now(), time.Now().Add(time.Minute))
	if d3, _ := c2.Sum(a); d3 == d {
		t.Fatal("a changed file kept its old digest")
	}
}
