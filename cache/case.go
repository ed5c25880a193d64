package cache

import (
	"fmt"
	"io"

	"github.com/sli2vol/sli2vol/data"
)

// prepareCase decodes one case and writes its arrays, then its entry (last, so that an
// entry on disk means a complete case).
func (c *Cache) prepareCase(src Source) error {
	cs := src.Case
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
	if src.PL != "" {
		if err := c.writePL(e, src.PL, img, sl); err != nil {
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

// writePL stores the pseudo-labels in slice order (uint8 when every id fits) and the
// foreground voxels UNETR++ centres patches on.
func (c *Cache) writePL(e *Entry, path string, img *data.Image, sl data.Slicer) error {
	st, err := stamp(path, "")
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	pl, err := data.LoadLabels(path, c.Settings.Limits)
	if err != nil {
		return err
	}
	if err := img.SameGrid(&pl.Geometry, 1e-3); err != nil {
		return fmt.Errorf("%s: does not lie on the grid of %s: %w", path, img.Source, err)
	}
	e.PL = &st
	labels := data.ToSliceOrder(sl, pl.Data)
	e.PLType = "|u1"
	for _, v := range labels {
		if v > 255 {
			e.PLType = "<i4"
			break
		}
	}
	err = writeNPY(c.path(e.ID, plSuffix), e.PLType, e.Shape, func(w io.Writer) error {
		if e.PLType == "<i4" {
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
	if err != nil {
		return err
	}
	return c.writeForeground(e, labels)
}

// writeForeground lists the foreground voxels of each label id (data.ForegroundIndex).
func (c *Cache) writeForeground(e *Entry, labels []int32) error {
	ids, lists := data.ForegroundIndex(e.ID, labels, e.Shape, nil)
	e.LabelIDs, e.ForegroundOf = ids, make([]int, len(lists))
	total := 0
	for k, l := range lists {
		e.ForegroundOf[k] = len(l)
		total += len(l)
	}
	return writeNPY(c.path(e.ID, fgSuffix), "<i4", [3]int{total, 1, 1}, func(w io.Writer) error {
		for _, l := range lists {
			if _, err := w.Write(asBytes(l)); err != nil {
				return err
			}
		}
		return nil
	})
}
