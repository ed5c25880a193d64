package cache

import (
	"fmt"
	"os"

	"github.com/sli2vol/sli2vol/data"
)

const imageSuffix = ".image.npy"

func plSuffix(p *PLEntry) string { return ".pl-" + p.Key + ".npy" }
func fgSuffix(p *PLEntry) string { return ".fg-" + p.Key + ".npy" }

// Reads go through positioned reads (pread) of the slice asked for rather than a memory
// map: the bytes pass through the page cache, which the kernel sizes to the machine, and a
// file truncated under a running job is an error naming it instead of a SIGBUS.

// open reads the entries of srcs' cases and checks their arrays' headers: the cache a run
// trains from, with no voxel read.
func (c *Cache) open(srcs []Source) (*Cache, error) {
	c.Entries = make([]*Entry, 0, len(srcs))
	c.pls = make([]*PLEntry, 0, len(srcs))
	c.offsets = map[string]int64{}
	for _, src := range srcs {
		e, err := c.readEntry(src.Case.ID)
		if err == nil && e == nil {
			err = fmt.Errorf("case %s is not cached (run sli2vol prepare)", src.Case.ID)
		}
		if err != nil {
			return nil, fmt.Errorf("cache %s: %w", c.Dir, err)
		}
		if err := c.checkArray(c.path(e.ID, imageSuffix), "<f4", e.Shape); err != nil {
			return nil, err
		}
		var pl *PLEntry
		if src.PL != "" {
			if _, pl, err = changedSource(e, src); err != nil || pl == nil {
				return nil, fmt.Errorf("cache %s: case %s: the pseudo-labels %s are not cached (run sli2vol prepare --pseudo)", c.Dir, e.ID, src.PL)
			}
			if err := c.checkArray(c.path(e.ID, plSuffix(pl)), pl.Dtype, e.Shape); err != nil {
				return nil, err
			}
		}
		c.Entries, c.pls = append(c.Entries, e), append(c.pls, pl)
	}
	return c, nil
}

// checkArray checks that an array file holds the dtype and shape its entry says.
func (c *Cache) checkArray(path, dtype string, shape [3]int) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cache %s: %w", c.Dir, err)
	}
	defer f.Close()
	off, dt, sh, err := npyHeader(f)
	if err != nil {
		return err
	}
	if dt != dtype || sh != shape {
		return fmt.Errorf("%s: holds %s %v, its entry says %s %v", path, dt, sh, dtype, shape)
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if want := off + int64(shape[0]*shape[1]*shape[2]*itemSize(dtype)); st.Size() != want {
		return fmt.Errorf("%s: %d bytes, want %d: truncated or damaged (rebuild the cache with --force)", path, st.Size(), want)
	}
	c.offsets[path] = off
	return nil
}

// readAt fills b from path's data at byte offset off.
func (c *Cache) readAt(path string, b []byte, off int64) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cache %s: %w", c.Dir, err)
	}
	defer f.Close()
	if _, err := f.ReadAt(b, c.offsets[path]+off); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// TrainVolumes are the cached cases as training volumes: nothing is read until a slice is.
func (c *Cache) TrainVolumes() []data.TrainVolume {
	out := make([]data.TrainVolume, len(c.Entries))
	for i, e := range c.Entries {
		norm := data.RestoreNormalizer(c.Settings.Intensity, e.Norm)
		out[i] = data.TrainVolume{ID: e.ID, Source: e.Image.Path, Len: e.Shape[0], H: e.Shape[1], W: e.Shape[2],
			HasPL: c.pls[i] != nil, Slices: &slices{c: c, e: e, pl: c.pls[i], norm: norm}}
	}
	return out
}

// slices reads one cached case.
type slices struct {
	c    *Cache
	e    *Entry
	pl   *PLEntry // the pseudo-labels read with the image; nil: none
	norm *data.Normalizer
}

func (s *slices) plane() int { return s.e.Shape[1] * s.e.Shape[2] }

func (s *slices) check(n, got int) error {
	if n < 0 || n >= s.e.Shape[0] || got != s.plane() {
		return fmt.Errorf("cache %s: case %s: slice %d of %d into %d values (want %d)", s.c.Dir, s.e.ID, n, s.e.Shape[0], got, s.plane())
	}
	return nil
}

func (s *slices) Image(n int, dst []float32) error {
	if err := s.check(n, len(dst)); err != nil {
		return err
	}
	return s.c.readAt(s.c.path(s.e.ID, imageSuffix), asBytes(dst), int64(n*s.plane()*4))
}

func (s *slices) Labels(n int, dst []int32) error {
	if s.pl == nil {
		return fmt.Errorf("cache %s: case %s: no pseudo-labels", s.c.Dir, s.e.ID)
	}
	if err := s.check(n, len(dst)); err != nil {
		return err
	}
	return s.labels(int64(n*s.plane()), dst)
}

func (s *slices) Normalizer() (*data.Normalizer, error) { return s.norm, nil }

// Bytes is the size of the cached arrays.
func (c *Cache) Bytes() int64 {
	var n int64
	for i, e := range c.Entries {
		v := int64(e.Shape[0] * e.Shape[1] * e.Shape[2])
		n += v * 4
		if p := c.pls[i]; p != nil {
			n += v * int64(itemSize(p.Dtype))
		}
	}
	return n
}

// SegVolumes are the cached cases with their pseudo-labels as UNETR++ training volumes:
// rows are read when a patch needs them, intensities windowed and standardised as
// data.SegImage does; the foreground lists are read now (at most 10,000 voxels a class).
func (c *Cache) SegVolumes() ([]*data.SegVolume, error) {
	out := make([]*data.SegVolume, len(c.Entries))
	for i, e := range c.Entries {
		p := c.pls[i]
		if p == nil {
			return nil, fmt.Errorf("cache %s: case %s: no pseudo-labels", c.Dir, e.ID)
		}
		fg, err := c.foreground(e, p)
		if err != nil {
			return nil, err
		}
		test := data.RestoreNormalizer(c.Settings.Intensity, e.Norm).Test()
		out[i] = &data.SegVolume{ID: e.ID, Shape: e.Shape, LabelIDs: p.LabelIDs, Foreground: fg,
			Rows: &segRows{slices: slices{c: c, e: e, pl: p}, test: test}}
	}
	return out, nil
}

// foreground reads a case's foreground lists.
func (c *Cache) foreground(e *Entry, p *PLEntry) ([][]int32, error) {
	total := 0
	for _, n := range p.ForegroundOf {
		total += n
	}
	path := c.path(e.ID, fgSuffix(p))
	if err := c.checkArray(path, "<i4", [3]int{total, 1, 1}); err != nil {
		return nil, err
	}
	all := make([]int32, total)
	if err := c.readAt(path, asBytes(all), 0); err != nil {
		return nil, err
	}
	lists := make([][]int32, len(p.ForegroundOf))
	for k, n := range p.ForegroundOf {
		lists[k], all = all[:n:n], all[n:]
	}
	return lists, nil
}

// segRows reads rows of a cached case for UNETR++.
type segRows struct {
	slices
	test data.Window
}

func (s *segRows) Rows(z, y0, n int, img []float32, lab []int32) error {
	e := s.e
	w := e.Shape[2]
	if z < 0 || z >= e.Shape[0] || y0 < 0 || y0+n > e.Shape[1] || len(img) != n*w || len(lab) != n*w {
		return fmt.Errorf("cache %s: case %s: rows %d+%d of slice %d out of range", s.c.Dir, e.ID, y0, n, z)
	}
	at := int64((z*e.Shape[1] + y0) * w)
	if err := s.c.readAt(s.c.path(e.ID, imageSuffix), asBytes(img), at*4); err != nil {
		return err
	}
	s.test.Apply(img, img)
	for i, x := range img {
		img[i] = e.Seg.Apply(x)
	}
	return s.labels(at, lab)
}

// labels reads len(dst) label ids from voxel at on.
func (s *slices) labels(at int64, dst []int32) error {
	path := s.c.path(s.e.ID, plSuffix(s.pl))
	if s.pl.Dtype == "<i4" {
		return s.c.readAt(path, asBytes(dst), at*4)
	}
	small := make([]uint8, len(dst))
	if err := s.c.readAt(path, small, at); err != nil {
		return err
	}
	for i, v := range small {
		dst[i] = int32(v)
	}
	return nil
}

// intact reports whether every array of e is there with its header, shape and size.
func (c *Cache) intact(e *Entry) bool {
	saved := c.offsets
	defer func() { c.offsets = saved }()
	c.offsets = map[string]int64{}
	if c.checkArray(c.path(e.ID, imageSuffix), "<f4", e.Shape) != nil {
		return false
	}
	for _, p := range e.PLs {
		total := 0
		for _, n := range p.ForegroundOf {
			total += n
		}
		if c.checkArray(c.path(e.ID, plSuffix(p)), p.Dtype, e.Shape) != nil ||
			c.checkArray(c.path(e.ID, fgSuffix(p)), "<i4", [3]int{total, 1, 1}) != nil {
			return false
		}
	}
	return true
}
