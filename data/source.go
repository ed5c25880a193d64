package data

import "fmt"

// Training reads volumes slice by slice, so that where their voxels live is a choice: in
// memory (MemoryVolume), in a preprocessed cache read on demand, or decoded again from the
// file after the least recently used volumes were dropped (the cache package). Samplers see
// only SliceReader; each implementation returns the same values for the same slice, so the
// sampled batches do not depend on the choice.

// SliceReader reads one volume's anatomical slices (Slicer order, H·W row-major). Readers
// are safe for concurrent use: batches are prepared by several workers.
type SliceReader interface {
	// Image copies the raw intensities of slice n into dst (H·W values).
	Image(n int, dst []float32) error
	// Labels copies the label ids of slice n into dst (H·W values); an error when the
	// volume has none.
	Labels(n int, dst []int32) error
	// Normalizer is the volume's intensity normalisation (decided from the whole volume).
	Normalizer() (*Normalizer, error)
}

// TrainVolume is one training volume: what sampling needs to know before reading any voxel
// (its size and whether it has pseudo-labels), and its slices.
type TrainVolume struct {
	ID     string
	Source string // the image's file or folder, for messages
	Len    int    // slices
	H, W   int    // slice size
	HasPL  bool
	Slices SliceReader
}

// MemoryVolume is a training volume held in memory: img, its pseudo-labels pl (nil: none),
// cut by s and normalised by norm.
func MemoryVolume(id string, img *Image, pl *Labels, s Slicer, norm *Normalizer) TrainVolume {
	h, w := s.Size()
	return TrainVolume{ID: id, Source: img.Source, Len: s.Len(), H: h, W: w, HasPL: pl != nil,
		Slices: &memorySlices{img: img, pl: pl, s: s, norm: norm}}
}

type memorySlices struct {
	img  *Image
	pl   *Labels
	s    Slicer
	norm *Normalizer
}

func (m *memorySlices) Image(n int, dst []float32) error {
	SliceInto(m.s, m.img.Data, n, dst)
	return nil
}

func (m *memorySlices) Labels(n int, dst []int32) error {
	if m.pl == nil {
		return fmt.Errorf("%s: no pseudo-labels", m.img.Source)
	}
	SliceInto(m.s, m.pl.Data, n, dst)
	return nil
}

func (m *memorySlices) Normalizer() (*Normalizer, error) { return m.norm, nil }
