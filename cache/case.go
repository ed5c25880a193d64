package cache

import (
	"fmt"
	"io"

	"github.com/sli2vol/sli2vol/data"
)

// job is a case to (re)write: the whole case (image and pseudo-labels), or, when the
// image is cached already (e), its pseudo-labels alone.
type job struct {
	src Source
	e   *Entry
}

// prepareCase decodes one case and writes its arrays, then its entry (last, so that an
// entry on disk means a complete case).
func (c *Cache) prepareCase(j job) error {
	if j.e != nil {
		if err := c.writePL(j.e, j.src.PL); err != nil {
			return err
		}
		return c.writeEntry(j.e)
	}
	cs := j.src.Case
	e := &Entry{ID: cs.ID}
	var err error
	if e.Image, err = stamp(cs.Image, cs.Series); err != nil {
		return fmt.Errorf("%s: %w", cs.Image, err)
	}
	img, err := cs.LoadImage(c.Settings.Limits)
	if err != nil {
		return err
	}
	sl, err := data.NewSlicer(&img.Geometry, c.Settings.Axis)
	if err != nil {
		return fmt.Errorf("%s: %w", cs.Image, err)
	}
	norm, err := data.NewNormalizer(c.Settings.Intensity, img.Data)
	if err != nil {
		return err
	}
	h, w := sl.Size()
	e.Shape, e.ArrayShape, e.Affine = [3]int{sl.Len(), h, w}, img.Shape, img.Affine
	e.Axis, e.Reversed, e.Norm = sl.Axis, sl.Reversed, norm.State()
	if e.Seg, err = c.writeImage(e, img, sl, norm.Test()); err != nil {
		return err
	}
	if j.src.PL != "" {
		if err := c.writePL(e, j.src.PL); err != nil {
			return err
		}
	}
	return c.writeEntry(e)
}

// writeImage stores the raw intensities in slice order and returns the standardisation
// statistics of the test-windowed volume, summed in the order SegImage sums them.
func (c *Cache) writeImage(e *Entry, img *data.Image, sl data.Slicer, test data.Window) (data.StandardStats, error) {
	var sum data.StandardSum
	raw := make([]float32, e.Shape[1]*e.Shape[2])
	win := make([]float32, len(raw))
	err := writeNPY(c.path(e.ID, imageSuffix), "<f4", e.Shape, func(w io.Writer) error {
		for n := range e.Shape[0] {
			data.SliceInto(sl, img.Data, n, raw)
			test.Apply(raw, win)
			sum.Add(win)
			if _, err := w.Write(asBytes(raw)); err != nil {
				return err
			}
		}
		return nil
	})
	return sum.Stats(), err
}

// writePL stores the pseudo-labels at path in slice order (uint8 when every id fits) and
// the foreground voxels UNETR++ centres patches on, and adds them to e.
func (c *Cache) writePL(e *Entry, path string) error {
	st, err := stamp(path, "")
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	pl, err := data.LoadLabels(path, c.Settings.Limits)
	if err != nil {
		return err
	}
	g := e.grid()
	if err := g.SameGrid(&pl.Geometry, 1e-3); err != nil {
		return fmt.Errorf("%s: does not lie on the grid of %s: %w", path, e.Image.Path, err)
	}
	sl, err := data.NewSlicer(&g, c.Settings.Axis)
	if err != nil {
		return fmt.Errorf("%s: %w", e.Image.Path, err)
	}
	p := &PLEntry{Stamp: st, Key: plKey(st.Path), Dtype: "|u1"}
	labels := data.ToSliceOrder(sl, pl.Data)
	for _, v := range labels {
		if v > 255 {
			p.Dtype = "<i4"
			break
		}
	}
	err = writeNPY(c.path(e.ID, plSuffix(p)), p.Dtype, e.Shape, func(w io.Writer) error {
		if p.Dtype == "<i4" {
			_, err := w.Write(asBytes(labels))
			return err
		}
		small := make([]uint8, len(labels))
		for i, v := range labels {
			small[i] = uint8(v)
		}
		_, err := w.Write(small)
		return err
	})
	if err == nil {
		err = c.writeForeground(e, p, labels)
	}
	if err != nil {
		return err
	}
	if e.PLs == nil {
		e.PLs = map[string]*PLEntry{}
	}
	e.PLs[st.Path] = p
	return nil
}

// writeForeground lists the foreground voxels of each label id (data.ForegroundIndex).
func (c *Cache) writeForeground(e *Entry, p *PLEntry, labels []int32) error {
	ids, lists := data.ForegroundIndex(e.ID, labels, e.Shape, nil)
	p.LabelIDs, p.ForegroundOf = ids, make([]int, len(lists))
	total := 0
	for k, l := range lists {
		p.ForegroundOf[k] = len(l)
		total += len(l)
	}
	return writeNPY(c.path(e.ID, fgSuffix(p)), "<i4", [3]int{total, 1, 1}, func(w io.Writer) error {
		for _, l := range lists {
			if _, err := w.Write(asBytes(l)); err != nil {
				return err
			}
		}
		return nil
	})
}
