package infer

import (
	"context"
	"fmt"
	"io"
	"math"
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
	// Spacing > 0 propagates on slices resampled to this many mm per pixel (bilinear; each
	// axis by its own pixel size, so the working grid keeps the slice's proportions): the
	// scale training saw (infer.spacing training, the run's scale.json). Resize wins.
	Spacing float64
	// NoCoarser resamples to Spacing only along axes whose pixels are larger (infer.spacing
	// finer): measured, upsampling a coarse test slice to the training scale gains much,
	// downsampling a fine one loses thin structures (the note of issue 23).
	NoCoarser bool
	// EncodeBatch is the number of slices encoded (and their affinities computed) together;
	// 0 sizes it to the GPU's working-set budget, and on the CPU runs the per-slice path (see
	// chunkSize).
	EncodeBatch int
	// PerSlice runs the reference path, one slice at a time with a host round trip each (the
	// path the chunked one is tested against).
	PerSlice bool
	// Verify applies Sli2Vol's verification module to every propagated slice (verify.go); it
	// needs each slice's labels on the host, so it runs on the per-slice path.
	Verify bool
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

// Request is one propagation: the annotated slices, and how the caller follows and stops it.
type Request struct {
	// Annotations: one or more labelled slices (distinct slice numbers). With several, each
	// slice takes the propagation from its nearest annotated slice in each direction, blended
	// by distance between two of them (see plan).
	Annotations []*data.Annotation
	// Ctx cancels the propagation between two slices (chunks of slices on the chunked
	// path); nil never does.
	Ctx context.Context
	// Progress, when set, is called after each slice with the slices done and the total.
	Progress func(done, total int)
}

// Segment propagates ann through img (sliced by s, normalised by win).
func (p *Propagator) Segment(img *data.Image, s data.Slicer, win data.Window, ann *data.Annotation) (*Result, error) {
	return p.Run(img, s, win, Request{Annotations: []*data.Annotation{ann}})
}

// Run propagates the request's annotations through img (sliced by s, normalised by win).
func (p *Propagator) Run(img *data.Image, s data.Slicer, win data.Window, r Request) (*Result, error) {
	defer torchx.PinThread()()
	anns, err := checkAnnotations(s, r.Annotations)
	if err != nil {
		return nil, err
	}
	if p.Estimate == configs.EstimateModel && len(p.EstimateVolume) != img.NumVoxels() {
		return nil, fmt.Errorf("infer.object_estimate model needs a UNETR++ run (--estimate-model RUN) to predict the volume first")
	}
	if h, w := p.workSize(img, s); p.Resize == 0 && max(h, w) > MaxWorkSide {
		dy, dx := s.PixelSpacing(&img.Geometry)
		return nil, fmt.Errorf("%s: slices of %.3g×%.3g mm/px resampled to %.3g mm/px would be %d×%d px, over %d a side: propagate at native spacing or with infer.resize",
			img.Source, dy, dx, p.Spacing, h, w, MaxWorkSide)
	}
	if m, ok := p.Model.(models.Module); ok {
		models.SetTraining(m, false)
	}
	g := newPropagation(p, img, s, win, anns, r)
	defer g.bar.Finish()
	// One outer scope holds what a slice hands to the next; see scoped for the rest.
	err = torchx.Try(func() {
		torchx.NoGrad(func() {
			torchx.TidyDo(func() { g.run(planChains(anns)) })
		})
	})
	if err == nil {
		err = g.err
	}
	if err != nil {
		return nil, err
	}
	return g.res, nil
}

// checkAnnotations refuses an empty request, empty or misshapen slices and a slice annotated
// twice, and returns the annotations in slice order.
func checkAnnotations(s data.Slicer, in []*data.Annotation) ([]*data.Annotation, error) {
	if len(in) == 0 {
		return nil, fmt.Errorf("no annotated slice")
	}
	h, w := s.Size()
	anns := slices.Clone(in)
	slices.SortFunc(anns, func(a, b *data.Annotation) int { return a.Slice - b.Slice })
	for i, a := range anns {
		switch {
		case len(a.IDs) == 0:
			return nil, fmt.Errorf("annotation on slice %d is empty", a.Slice)
		case a.Slice < 0 || a.Slice >= s.Len():
			return nil, fmt.Errorf("annotated slice %d is out of range (the volume has %d slices)", a.Slice, s.Len())
		case len(a.Mask) != h*w:
			return nil, fmt.Errorf("annotation on slice %d has %d pixels, the slice %d×%d", a.Slice, len(a.Mask), h, w)
		case i > 0 && anns[i-1].Slice == a.Slice:
			return nil, fmt.Errorf("slice %d is annotated twice", a.Slice)
		}
	}
	return anns, nil
}

// propagation is the state of one Run call.
type propagation struct {
	*Propagator
	img       *data.Image
	s         data.Slicer
	win       data.Window
	h, w      int
	wh, ww    int // the working grid (resampled: Resize or Spacing), else h, w
	resampled bool
	ids       []int32         // one-hot channel c > 0 → label id (the union of the annotations' ids)
	classes   int64           // background + ids
	channel   map[int32]int64 // label id → one-hot channel (0: background)
	res       *Result
	bar       *progress.Reporter
	req       Request
	done      int
	total     int
	err       error // the request's context ended
	batch     int   // slices per chunk (chunked path)
	ver       *verifier
	// The last slice's own features, computed once: the query of one step is the key of
	// the next.
	cacheN int // −1: none
	cacheF torchx.Tensor
}

// link is what one slice hands to the next: the mask it carries (one-hot probabilities on
// the working grid) and its features, the key the next slice's query is compared with.
// With verification the per-slice path also keeps the slice's labels (host) and number.
type link struct {
	mask, key torchx.Tensor
	labels    []int32
	n         int
}

func newPropagation(p *Propagator, img *data.Image, s data.Slicer, win data.Window, anns []*data.Annotation, r Request) *propagation {
	h, w := s.Size()
	g := &propagation{Propagator: p, img: img, s: s, win: win, h: h, w: w, cacheN: -1, req: r,
		channel: map[int32]int64{0: 0},
		res:     &Result{Labels: make([]int32, img.NumVoxels()), First: anns[0].Slice, Last: anns[len(anns)-1].Slice}}
	for _, a := range anns {
		for _, id := range a.IDs {
			if _, ok := g.channel[id]; !ok {
				g.ids = append(g.ids, id)
				g.channel[id] = 0
			}
		}
		data.SetSlice(s, g.res.Labels, a.Slice, a.Mask)
	}
	g.wh, g.ww = p.workSize(img, s)
	g.resampled = g.wh != h || g.ww != w
	slices.Sort(g.ids)
	for i, id := range g.ids {
		g.channel[id] = int64(i + 1)
	}
	g.classes = int64(len(g.ids) + 1)
	g.total = planLength(planChains(anns), s.Len())
	g.bar = progress.New(p.Log, g.total, "segment", 5*time.Second)
	g.batch = g.chunkSize()
	g.ver = newVerifier(h, w)
	return g
}

// advance counts n slices as done (visited, or skipped when a chain stops early).
func (g *propagation) advance(n int, status string) {
	g.done += n
	g.bar.Add(n, status)
	if g.req.Progress != nil {
		g.req.Progress(g.done, g.total)
	}
}

// cancelled reports (and records) that the request's context has ended.
func (g *propagation) cancelled() bool {
	if g.req.Ctx != nil && g.req.Ctx.Err() != nil {
		g.err = g.req.Ctx.Err()
		return true
	}
	return false
}

// emitFunc receives a propagated slice: its number, probabilities (1×K×h×w on the working
// grid, valid during the call) and labels (annotation ids, the slice's own grid).
type emitFunc func(n int, probs torchx.Tensor, mask []int32)

// chain carries ann towards dir (−1 or +1) slice by slice, up to but not including slice
// stop, until the mask vanishes; emit receives each propagated slice's probabilities (on the
// working grid) and labels. It returns the first slice it did not reach.
func (g *propagation) chain(ann *data.Annotation, dir, stop int, emit emitFunc) int {
	l := g.first(ann)
	for n := ann.Slice + dir; n != stop; n += dir {
		if g.cancelled() {
			return n
		}
		var ok bool
		if l, ok = g.scoped(l, func() (link, bool) { return g.step(l, n, emit) }); !ok {
			g.advance(dir*(stop-n)-1, "") // the stop slice itself was counted by step
			return n
		}
	}
	return stop
}

// first is the annotated slice's link: its mask and its features.
func (g *propagation) first(ann *data.Annotation) link {
	mask := g.carried(ann.Mask)
	return link{mask: mask, key: g.features(ann.Slice, mask), labels: ann.Mask, n: ann.Slice}
}

// carried is a native-grid label slice as the one-hot mask a chain carries: on the working
// grid, hard (the argmax of its resampled one-hot).
func (g *propagation) carried(labels []int32) torchx.Tensor {
	mask := g.oneHot(labels)
	if g.resampled {
		mask = g.hard(g.toWork(mask))
	}
	return mask
}

// step is Eq. 4 and the stop rule: slice n's features (the query) against the key give the
// affinity that carries the mask onto slice n; a mask of fewer than MinArea pixels ends the
// direction.
func (g *propagation) step(l link, n int, emit emitFunc) (link, bool) {
	query := g.features(n, l.mask)
	probs := g.Model.Propagate(g.Model.Affinity(query, l.key), l.mask)
	mask, area := g.labels(probs)
	if g.Verify {
		mask, area = g.verified(l, n, mask)
	}
	g.advance(1, fmt.Sprintf("slice %d, %d px", n, area))
	if area < max(1, g.MinArea) {
		return link{}, false
	}
	next := link{key: query, labels: mask, n: n}
	if g.Verify { // the verified mask is what is carried on, and what an interval blends
		next.mask = g.carried(mask)
		probs = next.mask
	} else {
		next.mask = g.reencode(probs, mask)
	}
	emit(n, probs, mask)
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
			mask[i] = g.ids[c-1]
			area++
		}
	}
	return mask, area
}

// reencode is the mask carried on: hard labels, as a soft mask would blur a little more
// each slice. Resampled, it stays on the working grid (no resampling drift).
func (g *propagation) reencode(probs torchx.Tensor, mask []int32) torchx.Tensor {
	if g.resampled {
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
	if !g.resampled {
		return t
	}
	return torchx.Interpolate(t, []int64{int64(g.wh), int64(g.ww)}, torchx.Bilinear, false)
}

func (g *propagation) toNative(t torchx.Tensor) torchx.Tensor {
	if !g.resampled {
		return t
	}
	return torchx.Interpolate(t, []int64{int64(g.h), int64(g.w)}, torchx.Bilinear, false)
}

// MaxWorkSide bounds the working grid that infer.spacing may ask for: a coarse test volume
// against a finely trained run could otherwise ask for slices of tens of thousands of pixels
// (the affinity alone is (2R+1)² values per pixel).
const MaxWorkSide = 4096

// workSize is the grid slices are propagated on: Resize×Resize, or each axis scaled from its
// pixel size to Spacing mm, or the slice's own size.
func (p *Propagator) workSize(img *data.Image, s data.Slicer) (h, w int) {
	h, w = s.Size()
	switch {
	case p.Resize > 0:
		return p.Resize, p.Resize
	case p.Spacing > 0:
		dy, dx := s.PixelSpacing(&img.Geometry)
		ty, tx := p.Spacing, p.Spacing
		if p.NoCoarser {
			ty, tx = min(ty, dy), min(tx, dx)
		}
		return scaledSide(h, dy, ty), scaledSide(w, dx, tx)
	}
	return h, w
}

// scaledSide is the number of pixels of size to mm that cover n pixels of size from mm
// (at least 1).
func scaledSide(n int, from, to float64) int {
	return max(1, int(math.Round(float64(n)*from/to)))
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

// verified is mask after the verification module (slice n against the link's slice), and
// its area.
func (g *propagation) verified(l link, n int, mask []int32) ([]int32, int) {
	out := g.ver.verify(mask, l.labels, data.Slice(g.s, g.img.Data, n), data.Slice(g.s, g.img.Data, l.n), g.ids)
	area := 0
	for _, v := range out {
		if v != 0 {
			area++
		}
	}
	return out, area
}
