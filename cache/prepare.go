package cache

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/internal/progress"
)

// Source is one case to cache: the dataset's case and its pseudo-label file ("" for none).
type Source struct {
	Case data.Case
	PL   string
}

// Settings are what a cache's contents depend on.
type Settings struct {
	Keys      map[string]string // config keys and their values, named when they changed
	Intensity data.IntensityConfig
	Axis      int // slice axis, −1: from the affine
	Limits    data.Limits
}

// Options control Prepare.
type Options struct {
	Force   bool      // rebuild a cache made under other settings or from changed files
	Workers int       // cases decoded at once (at least 1)
	Log     io.Writer // progress; nil: quiet
}

// Cache is an open cache folder: an entry per case, in the order the cases were given.
type Cache struct {
	Dir      string
	Settings Settings
	Entries  []*Entry
	pls      []*PLEntry       // per entry, the pseudo-labels read with it (nil: none)
	offsets  map[string]int64 // file → where its data starts
}

// Prepare makes the cache at dir, or completes it: cases already cached from the same
// files are kept (so an interrupted Prepare resumes), the others are decoded and written.
// A cache made under other settings, or from files that changed since, is an error naming
// the key or file, unless o.Force, which rebuilds it.
func Prepare(dir string, srcs []Source, s Settings, o Options) (*Cache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cache %s: %w", dir, err)
	}
	ix, err := openIndex(dir, s.Keys)
	if err != nil && o.Force && ix == nil && isCache(dir) {
		err = removeCache(dir)
	}
	if err != nil {
		return nil, err
	}
	c := &Cache{Dir: dir, Settings: s}
	if ix == nil { // a new cache; an existing one is left as it is (it may be read-only, shared)
		if err := os.MkdirAll(filepath.Join(dir, casesDir), 0o755); err != nil {
			return nil, fmt.Errorf("cache %s: %w", dir, err)
		}
		if err := writeIndex(dir, s.Keys); err != nil {
			return nil, fmt.Errorf("cache %s: %w", dir, err)
		}
	}
	todo, err := c.plan(srcs, o.Force)
	if err != nil {
		return nil, err
	}
	if err := c.prepareAll(todo, o); err != nil {
		return nil, err
	}
	return c.open(srcs)
}

// isCache reports whether dir holds a sli2vol cache index (of any version or settings):
// only such a folder is ever cleared.
func isCache(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, indexFile))
	var ix index
	return err == nil && json.Unmarshal(b, &ix) == nil && ix.Format == "sli2vol-cache"
}

// removeCache removes a cache's own files.
func removeCache(dir string) error {
	if err := os.RemoveAll(filepath.Join(dir, casesDir)); err != nil {
		return fmt.Errorf("cache %s: %w", dir, err)
	}
	return os.Remove(filepath.Join(dir, indexFile))
}

// plan lists the work: cases not cached yet, and cached cases without the pseudo-labels
// now wanted (those only). A case cached from files that changed since is an error naming
// the file, or with force, redone whole.
func (c *Cache) plan(srcs []Source, force bool) ([]job, error) {
	var todo []job
	for _, src := range srcs {
		if err := checkID(src.Case.ID); err != nil {
			return nil, fmt.Errorf("cache %s: %w", c.Dir, err)
		}
		e, err := c.readEntry(src.Case.ID)
		if err != nil {
			return nil, fmt.Errorf("cache %s: %w", c.Dir, err)
		}
		if e == nil {
			todo = append(todo, job{src: src})
			continue
		}
		changed, pl, err := changedSource(e, src)
		if err == nil && changed == "" && force && !c.intact(e) {
			changed = "a damaged array" // rebuilt below, as --force promises
		}
		switch {
		case err != nil:
			return nil, fmt.Errorf("cache %s: case %s: %w", c.Dir, src.Case.ID, err)
		case changed != "" && force:
			todo = append(todo, job{src: src})
		case changed != "":
			return nil, fmt.Errorf("cache %s: case %s: %s changed since it was cached; rebuild it (sli2vol prepare --force)", c.Dir, src.Case.ID, changed)
		case src.PL != "" && pl == nil:
			todo = append(todo, job{src: src, e: e})
		}
	}
	return todo, nil
}

// changedSource names the source file of src that differs from what e was made from, and
// returns the cached entry of src's pseudo-labels (nil when not cached).
func changedSource(e *Entry, src Source) (string, *PLEntry, error) {
	img, err := stamp(src.Case.Image, src.Case.Series)
	if err != nil {
		return "", nil, err
	}
	if img != e.Image {
		return src.Case.Image, nil, nil
	}
	if src.PL == "" {
		return "", nil, nil
	}
	st, err := stamp(src.PL, "")
	if err != nil {
		return "", nil, err
	}
	p := e.PLs[st.Path]
	if p != nil && p.Stamp != st {
		return src.PL, nil, nil
	}
	return "", p, nil
}

// prepareAll writes the cases of todo, o.Workers at a time; the first error stops the rest.
func (c *Cache) prepareAll(todo []job, o Options) error {
	if len(todo) == 0 {
		return nil
	}
	bar := progress.New(o.Log, len(todo), "prepare "+c.Dir, 5*time.Second)
	defer bar.Finish()
	next := make(chan job)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range max(o.Workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				err := c.prepareCase(j)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				bar.Add(1, j.src.Case.ID)
				mu.Unlock()
			}
		}()
	}
	for _, j := range todo {
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed {
			break
		}
		next <- j
	}
	close(next)
	wg.Wait()
	return first
}
