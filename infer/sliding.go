package infer

import (
	"fmt"
	"io"
	"math"
	"time"

	"github.com/sli2vol/sli2vol/internal/progress"
	"github.com/sli2vol/sli2vol/torchx"
)

// SlidingWindow predicts a whole D×H×W volume with a network tied to one patch size, as
// nnU-Net does: the volume is zero-padded up to the patch where smaller, windows overlap by
// Overlap of the patch, each window's softmax is weighted by a Gaussian centred on the
// patch (σ = patch/8, so borders, where context is missing, count least), optionally
// averaged over the 8 mirrorings, and the weighted sum is divided by the summed weights.
type SlidingWindow struct {
	Patch   [3]int
	Overlap float64 // 0.5: windows step by half a patch
	Mirror  bool
	Batch   int // windows per forward pass
	Device  string
	// MaxDeviceAccumulatorBytes bounds what the sums take on Device: the K×D×H×W probability
	// sum and the D×H×W weight sum of the padded volume, (K+1)·D·H·W·4 bytes. Bigger sums
	// are kept in host memory: each window's weighted softmax, still computed on Device, is
	// copied there and added in the same order, and float32 adds and divisions are correctly
	// rounded on every device, so the labels and probabilities are the same floats. 0 means
	// no bound (the sums always on Device), not "always on the host": an unset bound must not
	// move a small prediction off the GPU; a bound of 1 byte does that where wanted.
	MaxDeviceAccumulatorBytes int64
	Log                       io.Writer // placement line and progress (a bar on a terminal, lines otherwise); nil: quiet
}

// PatchNet maps B×1×D×H×W patches to B×K×D×H×W logits.
type PatchNet func(x torchx.Tensor) torchx.Tensor

// WindowStarts are the window offsets along one axis of length size (≥ patch): the fewest
// windows whose step does not exceed (1 − overlap)·patch, spread evenly from 0 to
// size − patch (nnU-Net's compute_steps_for_sliding_window).
func WindowStarts(size, patch int, overlap float64) []int {
	if size <= patch {
		return []int{0}
	}
	target := float64(patch) * (1 - overlap)
	n := int(math.Ceil(float64(size-patch)/target)) + 1
	step := float64(size-patch) / float64(n-1)
	out := make([]int, n)
	for i := range out {
		out[i] = int(math.Round(step * float64(i)))
	}
	return out
}

// gaussianWeights is the importance map over one patch: a product of 1-D Gaussians centred
// at patch/2 with σ = patch/8, scaled to a maximum of 1 and floored at 1e-6 so that no voxel
// of a window has zero weight.
func gaussianWeights(p [3]int) []float32 {
	axis := func(n int) []float64 {
		c, s := float64(n/2), float64(n)/8
		v := make([]float64, n)
		for i := range v {
			d := float64(i) - c
			v[i] = math.Exp(-d * d / (2 * s * s))
		}
		return v
	}
	a, b, c := axis(p[0]), axis(p[1]), axis(p[2])
	out := make([]float32, 0, p[0]*p[1]*p[2])
	for _, x := range a {
		for _, y := range b {
			for _, z := range c {
				out = append(out, float32(max(x*y*z, 1e-6)))
			}
		}
	}
	return out
}

// slabBytes sizes the slabs of the final division and argmax: a K×n×H×W quotient of at most
// this many bytes (at least one slice) at a time, so that labelling holds the sums plus one
// slab instead of a full K×D×H×W quotient beside them. A variable for the tests.
var slabBytes int64 = 64 << 20

// Accumulator says where a prediction keeps its sums and what they take: the placement line
// a prediction logs, and what a caller sizing a device can ask for beforehand.
type Accumulator struct {
	Classes    int
	Padded     [3]int // the padded volume's D×H×W
	Bytes      int64  // (K+1)·D·H·W·4: the probability and the weight sums
	Device     string // where the sums live: the window's device, or "cpu" when Host
	Bound      int64  // MaxDeviceAccumulatorBytes (0: none)
	Host       bool   // moved to the host because Bytes exceeds Bound
	SlabSlices int    // D-slices per slab of the final division and argmax
	SlabBytes  int64  // the K×SlabSlices×H×W quotient of one slab
}

func (a Accumulator) String() string {
	where := "on " + a.Device
	switch {
	case a.Host:
		where = fmt.Sprintf("on the host (over the %s bound)", byteSize(a.Bound))
	case a.Bound > 0:
		where += fmt.Sprintf(" (within the %s bound)", byteSize(a.Bound))
	}
	return fmt.Sprintf("%d×%d×%d×%d sum %s: %s; labels in %d-slice slabs (%s each)", a.Classes, a.Padded[0], a.Padded[1],
		a.Padded[2], where, byteSize(a.Bytes), a.SlabSlices, byteSize(a.SlabBytes))
}

// byteSize in decimal units, as the config's bound is given.
func byteSize(n int64) string {
	if n >= 1e9 {
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}

// Accumulator is where a prediction of a volume of this shape with this many classes keeps
// its sums, and how big they and the final slabs are.
func (s SlidingWindow) Accumulator(shape [3]int, classes int) Accumulator {
	g := s.geometry(shape)
	a := Accumulator{Classes: classes, Padded: g.padded, Device: s.device(), Bound: s.MaxDeviceAccumulatorBytes}
	a.Bytes = int64(classes+1) * int64(g.padded[0]) * int64(g.padded[1]) * int64(g.padded[2]) * 4
	if a.Bound > 0 && a.Bytes > a.Bound {
		a.Host, a.Device = true, "cpu"
	}
	slice := int64(classes) * int64(shape[1]) * int64(shape[2]) * 4
	a.SlabSlices = shape[0]
	if slice > 0 {
		a.SlabSlices = int(min(int64(shape[0]), max(1, slabBytes/slice)))
	}
	a.SlabBytes = int64(a.SlabSlices) * slice
	return a
}

func (s SlidingWindow) device() string {
	if s.Device == "" {
		return "cpu"
	}
	return s.Device
}

// geometry is a volume zero-padded up to the patch where smaller, half below and half above
// (as nnU-Net).
type geometry struct{ shape, padded, below [3]int }

func (s SlidingWindow) geometry(shape [3]int) geometry {
	g := geometry{shape: shape}
	for a := range 3 {
		g.padded[a] = max(shape[a], s.Patch[a])
		g.below[a] = (g.padded[a] - shape[a]) / 2
	}
	return g
}

// pads are F.pad's amounts, last axis first.
func (g geometry) pads() []int64 {
	p := make([]int64, 6)
	for a := range 3 {
		d := g.padded[a] - g.shape[a]
		p[2*(2-a)], p[2*(2-a)+1] = int64(g.below[a]), int64(d-g.below[a])
	}
	return p
}

// crop is the volume's own voxels in D-slices z … z+n−1 of a C×D×H×W tensor over the padded
// volume (a view).
func (g geometry) crop(t torchx.Tensor, z, n int) torchx.Tensor {
	t = torchx.Narrow(t, 1, int64(g.below[0]+z), int64(n))
	t = torchx.Narrow(t, 2, int64(g.below[1]), int64(g.shape[1]))
	return torchx.Narrow(t, 3, int64(g.below[2]), int64(g.shape[2]))
}

// starts are the windows' offsets, in the order their sums are added.
func (g geometry) starts(patch [3]int, overlap float64) [][3]int {
	var out [][3]int
	for _, z := range WindowStarts(g.padded[0], patch[0], overlap) {
		for _, y := range WindowStarts(g.padded[1], patch[1], overlap) {
			for _, x := range WindowStarts(g.padded[2], patch[2], overlap) {
				out = append(out, [3]int{z, y, x})
			}
		}
	}
	return out
}

// check refuses inputs that would fail deep inside libtorch with a less telling message.
func (s SlidingWindow) check(img []float32, shape [3]int, classes int) error {
	if len(img) != shape[0]*shape[1]*shape[2] {
		return fmt.Errorf("sliding window: %d voxels for shape %v", len(img), shape)
	}
	if classes < 1 || s.Patch[0] < 1 || s.Patch[1] < 1 || s.Patch[2] < 1 {
		return fmt.Errorf("sliding window: %d classes, patch %v", classes, s.Patch)
	}
	return nil
}

// start checks the input, works out the placement and logs it.
func (s SlidingWindow) start(img []float32, shape [3]int, classes int) (geometry, Accumulator, error) {
	if err := s.check(img, shape, classes); err != nil {
		return geometry{}, Accumulator{}, err
	}
	a := s.Accumulator(shape, classes)
	if s.Log != nil {
		fmt.Fprintf(s.Log, "sliding window: %v\n", a)
	}
	return s.geometry(shape), a, nil
}

// Probabilities returns the K×D×H×W class probabilities of img (D×H×W), on Device, or on the
// host where the sums exceed MaxDeviceAccumulatorBytes. The sums are divided in place, slab
// by slab; a volume padded up to the patch then takes one more K×D×H×W copy (its own voxels
// made contiguous). Predict needs neither.
func (s SlidingWindow) Probabilities(img []float32, shape [3]int, classes int, net PatchNet) (probs torchx.Tensor, err error) {
	defer torchx.PinThread()()
	g, a, err := s.start(img, shape, classes)
	if err != nil {
		return probs, err
	}
	err = torchx.Try(func() {
		probs = torchx.Tidy(func() torchx.Tensor {
			acc, wsum := s.sums(img, g, a, net)
			for z := 0; z < g.shape[0]; z += a.SlabSlices {
				n := min(a.SlabSlices, g.shape[0]-z)
				torchx.TidyDo(func() {
					q := g.crop(acc, z, n)
					torchx.CopyInto(q, torchx.Div(q, g.crop(wsum, z, n)))
				})
			}
			return torchx.Contiguous(g.crop(acc, 0, g.shape[0]))
		})
	})
	if err != nil {
		return probs, fmt.Errorf("sliding window: %w", err)
	}
	return probs, nil
}

// Predict returns the most probable class of every voxel of img (D×H×W). Its memory: the
// padded volume and one batch of windows on Device, the sums where Accumulator places them,
// one slab's quotient beside the sums, and the labels.
func (s SlidingWindow) Predict(img []float32, shape [3]int, classes int, net PatchNet) ([]int32, error) {
	defer torchx.PinThread()()
	g, a, err := s.start(img, shape, classes)
	if err != nil {
		return nil, err
	}
	out := make([]int32, 0, len(img))
	err = torchx.Try(func() {
		torchx.TidyDo(func() {
			acc, wsum := s.sums(img, g, a, net)
			for z := 0; z < g.shape[0]; z += a.SlabSlices {
				n := min(a.SlabSlices, g.shape[0]-z)
				idx := torchx.Tidy(func() torchx.Tensor {
					return torchx.Argmax(torchx.Div(g.crop(acc, z, n), g.crop(wsum, z, n)), 0, false)
				})
				for _, v := range torchx.Int64s(idx) {
					out = append(out, int32(v))
				}
				torchx.Free(idx)
			}
		})
	})
	if err != nil {
		return nil, fmt.Errorf("sliding window: %w", err)
	}
	return out, nil
}

// sums runs every window over img and returns the probability sum (K×D×H×W) and the weight
// sum (1×D×H×W) of the padded volume, on a.Device. The windows' softmaxes are computed on
// the window device either way; on the host path each group's is copied to the CPU first
// and added there, window by window in the same order as on the device.
func (s SlidingWindow) sums(img []float32, g geometry, a Accumulator, net PatchNet) (acc, wsum torchx.Tensor) {
	dev := s.device()
	vol := upload(img, g, dev)
	size := func(c int) []int64 {
		return []int64{int64(c), int64(g.padded[0]), int64(g.padded[1]), int64(g.padded[2])}
	}
	acc = torchx.Zeros(size(a.Classes), torchx.Float32, a.Device)
	wsum = torchx.Zeros(size(1), torchx.Float32, a.Device)
	gw := gaussianWeights(s.Patch)
	pd, ph, pw := int64(s.Patch[0]), int64(s.Patch[1]), int64(s.Patch[2])
	gauss := torchx.FromFloat32On(gw, dev, 1, pd, ph, pw)
	gaussAcc := torchx.FromFloat32On(gw, a.Device, 1, pd, ph, pw) // the same floats where the sums are
	starts := g.starts(s.Patch, s.Overlap)
	acc5, wsum5 := torchx.Unsqueeze(acc, 0), torchx.Unsqueeze(wsum, 0) // views, batch-shaped like the windows
	bs := max(s.Batch, 1)
	bar := progress.New(s.Log, len(starts), "predict", 5*time.Second)
	defer bar.Finish()
	torchx.NoGrad(func() {
		for i := 0; i < len(starts); i += bs {
			group := starts[i:min(i+bs, len(starts))]
			// One scope per group: its windows, softmaxes and host copies go as soon as they
			// are added, not at the next collection (a host copy is K×patch per window).
			torchx.TidyDo(func() {
				q := s.windowProbs(vol, group, gauss, net)
				p := torchx.To(q, a.Device, -1)
				torchx.Free(q) // on the host path, the device's copy goes before the adds
				for j, st := range group {
					torchx.TidyDo(func() { // each add's K×patch temporary goes at once
						w := s.window(acc5, st)
						torchx.CopyInto(w, torchx.Add(w, torchx.Narrow(p, 0, int64(j), 1)))
						w = s.window(wsum5, st)
						torchx.CopyInto(w, torchx.Add(w, gaussAcc))
					})
				}
			})
			bar.Add(len(group), fmt.Sprintf("%d windows of %v", len(starts), s.Patch))
			torchx.GC()
		}
	})
	return acc, wsum
}

// upload puts img, zero-padded to g.padded, on dev: uploaded as it is and padded there, so
// the host makes no padded copy, and the unpadded upload goes as soon as it is padded.
func upload(img []float32, g geometry, dev string) torchx.Tensor {
	return torchx.Tidy(func() torchx.Tensor {
		v := torchx.FromFloat32On(img, dev, 1, 1, int64(g.shape[0]), int64(g.shape[1]), int64(g.shape[2]))
		if g.padded != g.shape {
			v = torchx.Pad(v, g.pads(), torchx.PadConstant, 0)
		}
		return v
	})
}

// window is the patch at st of a B×C×D×H×W tensor (a view).
func (s SlidingWindow) window(t torchx.Tensor, st [3]int) torchx.Tensor {
	t = torchx.Narrow(t, 2, int64(st[0]), int64(s.Patch[0]))
	t = torchx.Narrow(t, 3, int64(st[1]), int64(s.Patch[1]))
	return torchx.Narrow(t, 4, int64(st[2]), int64(s.Patch[2]))
}

// windowProbs is the Gaussian-weighted softmax (B×K×patch) of a group of windows of vol,
// averaged over the 8 mirrorings when Mirror is set.
func (s SlidingWindow) windowProbs(vol torchx.Tensor, group [][3]int, gauss torchx.Tensor, net PatchNet) torchx.Tensor {
	parts := make([]torchx.Tensor, len(group))
	for j, st := range group {
		parts[j] = s.window(vol, st)
	}
	x := torchx.Cat(parts, 0)
	flips := [][]int64{nil}
	if s.Mirror {
		flips = [][]int64{nil, {4}, {3}, {3, 4}, {2}, {2, 4}, {2, 3}, {2, 3, 4}}
	}
	// Each mirroring in its own scope, the running sum freed as it is replaced: a group then
	// holds a few B×K×patch tensors at a time, not five per mirroring until it ends (with
	// 42 classes and a 64×128×128 patch, 40 of 176 MB per window).
	var p torchx.Tensor
	for _, f := range flips {
		prev := p
		p = torchx.Tidy(func() torchx.Tensor {
			var q torchx.Tensor
			if f == nil {
				q = torchx.Softmax(net(x), 1)
			} else {
				q = torchx.Flip(torchx.Softmax(net(torchx.Flip(x, f...)), 1), f...)
			}
			if prev.T == nil {
				return q
			}
			return torchx.Add(prev, q)
		})
		torchx.Free(prev)
	}
	defer torchx.Free(p)
	return torchx.Tidy(func() torchx.Tensor {
		mean := p
		if len(flips) > 1 { // x/1 is x: one window-sized temporary fewer without mirroring
			mean = torchx.DivScalar(p, float64(len(flips)))
		}
		return torchx.Mul(mean, gauss)
	})
}
