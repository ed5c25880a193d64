package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/internal/atomicfile"
)

// version changes when the layout does; a cache of another version is stale.
const version = 1

const (
	indexFile = "index.json"
	casesDir  = "cases"
)

// index is index.json: what every case's contents depend on.
type index struct {
	Format  string            `json:"format"`
	Version int               `json:"version"`
	Keys    map[string]string `json:"keys"`
}

// Stamp identifies a source file (or DICOM folder) as it was when cached.
type Stamp struct {
	Path    string `json:"path"`
	Series  string `json:"series,omitempty"`
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime_ns"`
}

func stamp(path, series string) (Stamp, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Stamp{}, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return Stamp{}, err
	}
	return Stamp{Path: abs, Series: series, Size: st.Size(), ModTime: st.ModTime().UnixNano()}, nil
}

// Entry is one cached case: cases/ID.json, written after its arrays.
type Entry struct {
	ID         string             `json:"id"`
	Image      Stamp              `json:"image"`
	Shape      [3]int             `json:"shape"` // D, H, W: anatomical slice order
	ArrayShape [3]int             `json:"array_shape"`
	Affine     data.Mat4          `json:"affine"`
	Axis       int                `json:"slice_axis"`
	Reversed   bool               `json:"reversed"`
	Norm       data.NormState     `json:"normalizer"`
	Seg        data.StandardStats `json:"seg_standardization"` // of the test-windowed image
	// PLs are the case's cached pseudo-label sets by their file's absolute path: the raw and
	// the refined pseudo-labels of a pipeline share one cache of the images.
	PLs map[string]*PLEntry `json:"pseudo_labels,omitempty"`
}

// PLEntry is one cached pseudo-label volume of a case.
type PLEntry struct {
	Stamp
	Key          string  `json:"key"`               // names its arrays: ID.pl-KEY.npy, ID.fg-KEY.npy
	Dtype        string  `json:"dtype"`             // |u1 when every id fits, else <i4
	LabelIDs     []int32 `json:"label_ids"`         // ids > 0 present
	ForegroundOf []int   `json:"foreground_counts"` // per label id: voxels listed in the fg file
}

// plKey names a pseudo-label file's arrays: a short hash of its absolute path.
func plKey(abs string) string {
	h := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(h[:6])
}

// grid is the image's geometry as cached.
func (e *Entry) grid() data.Geometry {
	return data.Geometry{Shape: e.ArrayShape, Affine: e.Affine, Source: e.Image.Path}
}

func (c *Cache) path(id, suffix string) string { return filepath.Join(c.Dir, casesDir, id+suffix) }

// checkID refuses case ids that cannot name a file.
func checkID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, `/\`+"\x00") {
		return fmt.Errorf("case id %q cannot name a cache file", id)
	}
	return nil
}

// openIndex reads dir's index.json and compares its keys with keys: a cache made under
// other settings is an error naming the first key that differs. A missing index is
// (nil, nil); a folder that is not a cache (files but no index) is refused, so that
// nothing a user put there is overwritten.
func openIndex(dir string, keys map[string]string) (*index, error) {
	b, err := os.ReadFile(filepath.Join(dir, indexFile))
	if errors.Is(err, os.ErrNotExist) {
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			return nil, fmt.Errorf("cache %s: the folder holds files but no %s; not a cache, left alone", dir, indexFile)
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", dir, err)
	}
	var ix index
	if err := json.Unmarshal(b, &ix); err != nil || ix.Format != "sli2vol-cache" {
		return nil, fmt.Errorf("cache %s: %s is not a sli2vol cache index", dir, indexFile)
	}
	if ix.Version != version {
		return nil, fmt.Errorf("cache %s: layout version %d, this sli2vol writes %d; rebuild it (--force)", dir, ix.Version, version)
	}
	if k := changedKey(ix.Keys, keys); k != "" {
		return nil, fmt.Errorf("cache %s: made with %s = %s, the config has %s; rebuild it (sli2vol prepare --force) or point data.cache elsewhere",
			dir, k, orNone(ix.Keys[k]), orNone(keys[k]))
	}
	return &ix, nil
}

// changedKey is the first key (in sorted order) whose value differs.
func changedKey(a, b map[string]string) string {
	var all []string
	for k := range a {
		all = append(all, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			all = append(all, k)
		}
	}
	sort.Strings(all)
	for _, k := range all {
		va, oka := a[k]
		vb, okb := b[k]
		if va != vb || oka != okb {
			return k
		}
	}
	return ""
}

func orNone(s string) string {
	if s == "" {
		return "(unset)"
	}
	return s
}

func writeIndex(dir string, keys map[string]string) error {
	b, err := json.MarshalIndent(index{Format: "sli2vol-cache", Version: version, Keys: keys}, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, indexFile), append(b, '\n'))
}

// readEntry reads a case's entry; (nil, nil) when the case is not cached yet.
func (c *Cache) readEntry(id string) (*Entry, error) {
	b, err := os.ReadFile(c.path(id, ".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%s: %w", c.path(id, ".json"), err)
	}
	return &e, nil
}

func (c *Cache) writeEntry(e *Entry) error {
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(c.path(e.ID, ".json"), append(b, '\n'))
}
