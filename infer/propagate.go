package infer

import (
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/sli2vol/sli2vol/configs"
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
	// Estimate is the test-time object estimate fed where training fed pseudo-labels; the
	// zero value is configs.EstimateNone (the paper: slice features only).
	Estimate configs.Estimate
	// EstimateVolume is the label volume (image grid) that configs.EstimateModel feeds as
	// PLs: a UNETR++'s prediction of the test volume.
	EstimateVolume []int32
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
	if p.Estimate == configs.EstimateModel && len(p.EstimateVolume) != img.NumVoxels() {
		return nil, fmt.Errorf("infer.object_estimate model needs a UNETR++ run (--estimate-model RUN) to predict the volume first")
	}
	if m, ok := p.Model.(models.Module); ok {
		models.SetTraining(m, false)
	}
	g := newPropagation(p, img, s, win, ann)
	defer g.bar.Finish()
	// One outer scope holds what a slice hands to the next; see scoped for the rest.
	err := torchx.Try(func() {
		torchx.NoGrad(func() {
			torchx.TidyDo(func() {
				g.direction(-1)
				g.direction(+1)
			})
		})
	})
	if err != nil {
		return nil, err
	}
	return g.res, nil
}

// propagation is the state of one Segment call.
type propagation struct {
	*Propagator
	img     *data.Image
	s       data.Slicer
	win     data.Window
	ann     *data.Annotation
	h, w    int
	classes int64           // background + the annotation's ids
	channel map[int32]int64 // label id → one-hot channel (0: background)
	res     *Result
	bar     *progress.Reporter
	// The last slice's own features, computed once: the query of one step is the key of
	// the next.
	cacheN int // −1: none
	cacheF torchx.Tensor
}

// link is what one slice hands to the next: the mask it carries (one-hot probabilities on
// the working grid) and its features, the key the next slice's query is compared with.
type link struct{ mask, key torchx.Tensor }

func newPropagation(p *Propagator, img *data.Image, s data.Slicer, win data.Window, ann *data.Annotation) *propagation {
	h, w := s.Size()
	g := &propagation{Propagator: p, img: img, s: s, win: win, ann: ann, h: h, w: w, cacheN: -1,
		classes: int64(len(ann.IDs) + 1), channel: map[int32]int64{0: 0},
		res: &Result{Labels: make([]int32, img.NumVoxels()), First: ann.Slice, Last: ann.Slice},
		bar: progress.New(p.Log, s.Len()-1, "segment", 5*time.Second)}
	for i, id := range ann.IDs {
		g.channel[id] = int64(i + 1)
	}
	data.SetSlice(s, g.res.Labels, ann.Slice, ann.Mask)
	return g
}

// direction carries the annotation slice by slice towards dir (−1 or +1) until the volume
// ends or the mask vanishes.
func (g *propagation) direction(dir int) {
	l := g.first()
	for n := g.ann.Slice + dir; n >= 0 && n < g.s.Len(); n += dir {
		var ok bool
		if l, ok = g.scoped(l, func() (link, bool) { return g.step(l, n) }); !ok {
			return
		}
	}
}

// first is the annotated slice's link: its mask and its features.
func (g *propagation) first() link {
	mask := g.oneHot(g.ann.Mask)
	if g.Resize > 0 {
		mask = g.hard(g.toWork(mask))
	}
	return link{mask: mask, key: g.features(g.ann.Slice, mask)}
}

// step is Eq. 4 and the stop rule: slice n's features (the query) against the key give the
// affinity that carries the mask onto slice n; a mask of fewer than MinArea pixels ends the
// direction.
func (g *propagation) step(l link, n int) (link, bool) {
	query := g.features(n, l.mask)
	probs := g.Model.Propagate(g.Model.Affinity(query, l.key), l.mask)
	mask, area := g.labels(probs)
	g.bar.Add(1, fmt.Sprintf("slice %d, %d px", n, area))
	if area < max(1, g.MinArea) {
		return link{}, false
	}
	data.SetSlice(g.s, g.res.Labels, n, mask)
	g.res.First, g.res.Last = min(g.res.First, n), max(g.res.Last, n)
	next := link{mask: g.reencode(probs, mask), key: query}
	if g.Estimate == configs.EstimatePropagated {
		next.key = g.features(n, next.mask) // the key's estimate is the mask it carries
	}
	return next, true
}

// scoped runs one slice's step in its own scope. Its temporaries are freed when it ends;
// the link it returns and the feature cache pass to the outer scope, and the tensors they
// replace are freed at once, so no tensor is left to the garbage collector.
func (g *propagation) scoped(prev link, step func() (link, bool)) (link, bool) {
	before := []torchx.Tensor{prev.mask, prev.key, g.cacheF}
	var next link
	ok := false
	kept := torchx.TidyAll(func() []torchx.Tensor {
		if next, ok = step(); !ok {
			g.cacheN, g.cacheF = -1, torchx.Tensor{} // its features go with this scope
			return nil
		}
		return []torchx.Tensor{next.mask, next.key, g.cacheF}
	})
	if ok {
		freeReplaced(before, kept)
		torchx.GC() // nothing to collect unless a Network left tensors outside the scopes
	}
	return next, ok
}

// features is slice n's key/query: its own features (cached), and with an object estimate
// the features of that estimate beside them (mask: the mask carried onto n).
func (g *propagation) features(n int, mask torchx.Tensor) torchx.Tensor {
	if n != g.cacheN {
		g.cacheN, g.cacheF = n, g.Model.SliceFeatures(g.slice(n))
	}
	switch g.Estimate {
	case configs.EstimatePropagated:
		return torchx.Cat([]torchx.Tensor{g.cacheF, g.Model.PLFeatures(g.foreground(mask))}, 1)
	case configs.EstimateModel:
		return torchx.Cat([]torchx.Tensor{g.cacheF, g.Model.PLFeatures(g.modelEstimate(n))}, 1)
	}
	return g.cacheF
}

// labels is the argmax of probs on the slice's own grid as annotation ids, and its area.
func (g *propagation) labels(probs torchx.Tensor) ([]int32, int) {
	arg := torchx.Int64s(torchx.Argmax(g.toNative(probs), 1, false))
	mask := make([]int32, len(arg))
	area := 0
	for i, c := range arg {
		if c > 0 {
			mask[i] = g.ann.IDs[c-1]
			area++
		}
	}
	return mask, area
}

// reencode is the mask carried on: hard labels, as a soft mask would blur a little more
// each slice. With Resize it stays on the working grid (no resampling drift).
func (g *propagation) reencode(probs torchx.Tensor, mask []int32) torchx.Tensor {
	if g.Resize > 0 {
		return g.hard(probs)
	}
	return g.oneHot(mask)
}

// slice is slice n normalised and scaled as at training, on the working grid.
func (g *propagation) slice(n int) torchx.Tensor {
	v := data.Slice(g.s, g.img.Data, n)
	g.win.Apply(v, v)
	return g.toWork(torchx.MulScalar(tensors.SlicesOn(v, 1, g.h, g.w, g.Device), g.Scale))
}

// modelEstimate is the network's prediction of slice n as a PL: its foreground (every
// structure, as training PLs hold every structure), scaled like an image.
func (g *propagation) modelEstimate(n int) torchx.Tensor {
	v := data.Slice(g.s, g.EstimateVolume, n)
	m := make([]float32, len(v))
	for i, id := range v {
		if id > 0 {
			m[i] = float32(g.Scale)
		}
	}
	return g.toWork(tensors.SlicesOn(m, 1, g.h, g.w, g.Device))
}

// foreground is the propagated estimate fed to the PL encoder: 1 − P(background), scaled
// like an image.
func (g *propagation) foreground(probs torchx.Tensor) torchx.Tensor {
	bg := torchx.Narrow(probs, 1, 0, 1)
	return torchx.MulScalar(torchx.AddScalar(torchx.Neg(bg), 1), g.Scale)
}

// oneHot is a native-grid label slice as 1×K×H×W probabilities on the device.
func (g *propagation) oneHot(mask []int32) torchx.Tensor {
	idx := make([]int64, len(mask))
	for i, v := range mask {
		idx[i] = g.channel[v]
	}
	t := torchx.OneHot(torchx.FromInt64(idx, 1, int64(g.h), int64(g.w)), g.classes) // 1×H×W×K
	return torchx.To(torchx.Permute(t, 0, 3, 1, 2), g.Device, torchx.Float32)
}

// hard is the one-hot of probs' argmax, on the grid probs lie on.
func (g *propagation) hard(probs torchx.Tensor) torchx.Tensor {
	return torchx.Permute(torchx.To(torchx.OneHot(torchx.Argmax(probs, 1, false), g.classes), "", torchx.Float32), 0, 3, 1, 2)
}

// toWork resamples a native slice to the working grid (bilinear); a native mask enters it as
// the argmax of its resampled one-hot (first), results leave it as the argmax of resampled
// probabilities (labels).
func (g *propagation) toWork(t torchx.Tensor) torchx.Tensor {
	if g.Resize <= 0 {
		return t
	}
	return torchx.Interpolate(t, []int64{int64(g.Resize), int64(g.Resize)}, torchx.Bilinear, false)
}

func (g *propagation) toNative(t torchx.Tensor) torchx.Tensor {
	if g.Resize <= 0 {
		return t
	}
	return torchx.Interpolate(t, []int64{int64(g.h), int64(g.w)}, torchx.Bilinear, false)
}

// freeReplaced frees the tensors of prev that are not in kept (one handle may appear twice:
// the key is often the cached features themselves).
func freeReplaced(prev, kept []torchx.Tensor) {
	for i, p := range prev {
		if p.T == nil || slices.ContainsFunc(kept, func(k torchx.Tensor) bool { return k.T == p.T }) ||
			slices.ContainsFunc(prev[:i], func(q torchx.Tensor) bool { return q.T == p.T }) {
			continue
		}
		torchx.Free(p)
	}
}
