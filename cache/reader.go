package cache

import (
	"fmt"
	"os"

	"github.com/sli2vol/sli2vol/data"
)

const (
	imageSuffix = ".image.npy"
	plSuffix    = ".pl.npy"
	fgSuffix    = ".fg.npy"
)

// Reads go through positioned reads (pread) of the slice asked for rather than a memory
// map: the bytes pass through the page cache, which the kernel sizes to the machine, and a
// file truncated under a running job is an error naming it instead of a SIGBUS.

// open reads the entries of srcs' cases and checks their arrays' headers: the cache a run
// trains from, with no voxel read.
func (c *Cache) open(srcs []Source) (*Cache, error) {
	c.Entries = make([]*Entry, 0, len(srcs))
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
		if e.PL != nil {
			if err := c.checkArray(c.path(e.ID, plSuffix), e.PLType, e.Shape); err != nil {
				return nil, err
			}
		}
		c.Entries = append(c.Entries, e)
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
			HasPL: e.PL != nil, Slices: &slices{c: c, e: e, norm: norm}}
	}
	return out
}

// slices reads one cached case.
type slices struct {
	c    *Cache
	e    *Entry
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
	if s.e.PL == nil {
		return fmt.Errorf("cache %s: case %s has no pseudo-labels", s.c.Dir, s.e.ID)
	}
	if err := s.check(n, len(dst)); err != nil {
		return err
	}
	path := s.c.path(s.e.ID, plSuffix)
	if s.e.PLType == "<i4" {
		return s.c.readAt(path, asBytes(dst), int64(n*s.plane()*4))
	}
	small := make([]uint8, len(dst))
	if err := s.c.readAt(path, small, int64(n*s.plane())); err != nil {
		return err
	}
	for i, v := range small {
		dst[i] = int32(v)
	}
	return nil
}

func (s *slices) Normalizer() (*data.Normalizer, error) { return s.norm, nil }

// Bytes is the size of the cached arrays.
func (c *Cache) Bytes() int64 {
	var n int64
	for _, e := range c.Entries {
		v := int64(e.Shape[0] * e.Shape[1] * e.Shape[2])
		n += v * 4
		if e.PL != nil {
			n += v * int64(itemSize(e.PLType))
		}
	}
	return n
}
