package infer

import (
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/data/tensors"
	"github.com/sli2vol/sli2vol/internal/progress"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/torchx"
)

// Propagator carries an annotated slice through a volume (§3.4): the affinity between the
// features of neighbouring slices moves the mask one slice at a time (Eq. 4), in both
// directions from the annotation.
type Propagator struct {
	Model  Network
	Device string
	// Scale multiplies normalised intensities (data.intensity_scale), as in training.
	Scale float64
	// MinArea: a direction stops at the first slice whose propagated mask has fewer
	// foreground pixels, so structures that end are not dragged on.
	MinArea int
	// EstimateVolume is the label volume (image grid) that estimate "model" feeds as PLs:
	// a UNETR++'s prediction of the test volume.
	EstimateVolume []int32
	// Estimate is the test-time object estimate: "none" (the paper: slice features only) or
	// "propagated" (the current mask stands in for the pseudo-label of both slices).
	Estimate string
	// Resize > 0 propagates on slices resampled to Resize×Resize (bilinear), the scale
	// training sees them at (data.resize_range), and resamples each result back to the
	// slice's own size; 0 propagates at the native size.
	Resize int
	Log    io.Writer
}

// Network is what propagation needs of a correspondence-flow model (models.CFN).
type Network interface {
	SliceFeatures(slice torchx.Tensor) torchx.Tensor
	PLFeatures(mask torchx.Tensor) torchx.Tensor
	Affinity(query, key torchx.Tensor) torchx.Tensor
	Propagate(affinity, src torchx.Tensor) torchx.Tensor
}

// Result is a propagated label volume and where each direction stopped.
type Result struct {
	Labels      []int32 // on the image's grid, annotation ids
	First, Last int     // anatomical slice range that received a mask
}

// Segment propagates ann through img (sliced by s, normalised by win).
func (p *Propagator) Segment(img *data.Image, s data.Slicer, win data.Window, ann *data.Annotation) (*Result, error) {
	defer torchx.PinThread()()
	if len(ann.IDs) == 0 {
		return nil, fmt.Errorf("annotation on slice %d is empty", ann.Slice)
	}
	switch p.Estimate {
	case "", "none", "propagated":
	case "model":
		if len(p.EstimateVolume) != img.NumVoxels() {
			return nil, fmt.Errorf("infer.object_estimate model needs a UNETR++ run (--estimate-model RUN) to predict the volume first")
		}
	default:
		return nil, fmt.Errorf("infer.object_estimate %q: want none, propagated or model", p.Estimate)
	}
	h, w := s.Size()
	res := &Result{Labels: make([]int32, img.NumVoxels()), First: ann.Slice, Last: ann.Slice}
	data.SetSlice(s, res.Labels, ann.Slice, ann.Mask)
	if m, ok := p.Model.(models.Module); ok {
		models.SetTraining(m, false)
	}
	// Channel 0 is background, channel c+1 the annotation's c-th id.
	channel := map[int32]int64{0: 0}
	for i, id := range ann.IDs {
		channel[id] = int64(i + 1)
	}
	k := int64(len(ann.IDs) + 1)
	oneHot := func(mask []int32) torchx.Tensor {
		idx := make([]int64, len(mask))
		for i, v := range mask {
			idx[i] = channel[v]
		}
		t := torchx.OneHot(torchx.FromInt64(idx, 1, int64(h), int64(w)), k) // 1×H×W×K
		return torchx.To(torchx.Permute(t, 0, 3, 1, 2), p.Device, torchx.Float32)
	}
	// The working grid: native, or Resize×Resize. A native mask enters it as the argmax of its
	// bilinearly resampled one-hot; results leave it as the argmax of resampled probabilities.
	toWork := func(t torchx.Tensor) torchx.Tensor {
		if p.Resize <= 0 {
			return t
		}
		return torchx.Interpolate(t, []int64{int64(p.Resize), int64(p.Resize)}, torchx.Bilinear, false)
	}
	toNative := func(t torchx.Tensor) torchx.Tensor {
		if p.Resize <= 0 {
			return t
		}
		return torchx.Interpolate(t, []int64{int64(h), int64(w)}, torchx.Bilinear, false)
	}
	hardWork := func(probs torchx.Tensor) torchx.Tensor { // one-hot of the argmax, on the working grid
		return torchx.Permute(torchx.To(torchx.OneHot(torchx.Argmax(probs, 1, false), k), "", torchx.Float32), 0, 3, 1, 2)
	}
	slice := func(n int) torchx.Tensor {
		v := data.Slice(s, img.Data, n)
		win.Apply(v, v)
		return toWork(torchx.MulScalar(tensors.SlicesOn(v, 1, h, w, p.Device), p.Scale))
	}
	// The network's prediction as a PL: its foreground (every structure, as training PLs
	// hold every structure), scaled like an image.
	modelEstimate := func(n int) torchx.Tensor {
		v := data.Slice(s, p.EstimateVolume, n)
		m := make([]float32, len(v))
		for i, id := range v {
			if id > 0 {
				m[i] = float32(p.Scale)
			}
		}
		return toWork(tensors.SlicesOn(m, 1, h, w, p.Device))
	}
	// Each slice's own features are computed once: the query of one step is the key of the
	// next. (With a propagated estimate only the PL half is recomputed.)
	cachedN, cachedF := -1, torchx.Tensor{}
	features := func(n int, estimate torchx.Tensor) torchx.Tensor {
		if n != cachedN {
			cachedN, cachedF = n, p.Model.SliceFeatures(slice(n))
		}
		f := cachedF
		switch p.Estimate {
		case "propagated":
			f = torchx.Cat([]torchx.Tensor{f, p.Model.PLFeatures(estimate)}, 1)
		case "model":
			f = torchx.Cat([]torchx.Tensor{f, p.Model.PLFeatures(modelEstimate(n))}, 1)
		}
		return f
	}
	foreground := func(probs torchx.Tensor) torchx.Tensor {
		// The estimate fed to the PL encoder: 1 − P(background), scaled like an image.
		bg := torchx.Narrow(probs, 1, 0, 1)
		return torchx.MulScalar(torchx.AddScalar(torchx.Neg(bg), 1), p.Scale)
	}
	bar := progress.New(p.Log, s.Len()-1, "segment", 5*time.Second)
	defer bar.Finish()
	// One outer scope holds what a slice hands to the next (the mask it carries, the key and
	// the cached features); what a slice replaces is freed at once. So no tensor is left to
	// the garbage collector, and torchx.GC has nothing to collect after a slice.
	err := torchx.Try(func() {
		torchx.NoGrad(func() {
			torchx.TidyDo(func() {
				for _, dir := range []int{-1, +1} {
					cur := oneHot(ann.Mask)
					if p.Resize > 0 {
						cur = hardWork(toWork(cur))
					}
					key := features(ann.Slice, foreground(cur))
					for n := ann.Slice + dir; n >= 0 && n < s.Len(); n += dir {
						// One slice's tensors go when it is done; what the next slice needs is kept.
						stop := false
						prev := []torchx.Tensor{cur, key, cachedF}
						kept := torchx.TidyAll(func() []torchx.Tensor {
							query := features(n, foreground(cur))
							probs := p.Model.Propagate(p.Model.Affinity(query, key), cur)
							arg := torchx.Int64s(torchx.Argmax(toNative(probs), 1, false))
							mask := make([]int32, len(arg))
							area := 0
							for i, c := range arg {
								if c > 0 {
									mask[i] = ann.IDs[c-1]
									area++
								}
							}
							bar.Add(1, fmt.Sprintf("slice %d, %d px", n, area))
							if area < max(1, p.MinArea) {
								stop = true
								cachedN = -1 // its features go with this scope
								return nil
							}
							data.SetSlice(s, res.Labels, n, mask)
							res.First, res.Last = min(res.First, n), max(res.Last, n)
							// Re-encode hard labels: a soft mask would blur a little more each slice.
							if p.Resize > 0 {
								cur = hardWork(probs) // stays on the working grid: no resampling drift
							} else {
								cur = oneHot(mask)
							}
							if p.Estimate == "propagated" {
								key = features(n, foreground(cur)) // the key's estimate is the mask it carries
							} else {
								key = query
							}
							return []torchx.Tensor{cur, key, cachedF}
						})
						if stop {
							break
						}
						freeReplaced(prev, kept)
						torchx.GC()
					}
				}
			})
		})
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// freeReplaced frees the tensors of prev that are not in kept (one handle may appear twice:
// the key is often the cached features themselves).
func freeReplaced(prev, kept []torchx.Tensor) {
	for _, p := range prev {
		if p.T == nil || slices.ContainsFunc(kept, func(k torchx.Tensor) bool { return k.T == p.T }) {
			continue
		}
		torchx.Free(p)
	}
}
