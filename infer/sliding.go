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
	Log     io.Writer // progress (a bar on a terminal, lines otherwise); nil: quiet
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

// Probabilities returns the K×D×H×W class probabilities of img (D×H×W).
func (s SlidingWindow) Probabilities(img []float32, shape [3]int, classes int, net PatchNet) (probs torchx.Tensor, err error) {
	defer torchx.PinThread()()
	if len(img) != shape[0]*shape[1]*shape[2] {
		return probs, fmt.Errorf("sliding window: %d voxels for shape %v", len(img), shape)
	}
	err = torchx.Try(func() { probs = s.probabilities(img, shape, classes, net) })
	return probs, err
}

func (s SlidingWindow) probabilities(img []float32, shape [3]int, classes int, net PatchNet) torchx.Tensor {
	dev := s.Device
	if dev == "" {
		dev = "cpu"
	}
	vol := torchx.FromFloat32(img, 1, 1, int64(shape[0]), int64(shape[1]), int64(shape[2]))
	// Pad each axis shorter than the patch, half below and half above (as nnU-Net).
	var padBelow, padded [3]int
	pads := make([]int64, 6) // F.pad order: last axis first
	for a := range 3 {
		padded[a] = max(shape[a], s.Patch[a])
		d := padded[a] - shape[a]
		padBelow[a] = d / 2
		pads[2*(2-a)], pads[2*(2-a)+1] = int64(d/2), int64(d-d/2)
	}
	vol = torchx.To(torchx.Pad(vol, pads, torchx.PadConstant, 0), dev, -1)
	acc := torchx.Zeros([]int64{int64(classes), int64(padded[0]), int64(padded[1]), int64(padded[2])}, torchx.Float32, dev)
	wsum := torchx.Zeros([]int64{1, int64(padded[0]), int64(padded[1]), int64(padded[2])}, torchx.Float32, dev)
	pd, ph, pw := int64(s.Patch[0]), int64(s.Patch[1]), int64(s.Patch[2])
	gauss := torchx.To(torchx.FromFloat32(gaussianWeights(s.Patch), 1, pd, ph, pw), dev, -1)

	var starts [][3]int
	for _, z := range WindowStarts(padded[0], s.Patch[0], s.Overlap) {
		for _, y := range WindowStarts(padded[1], s.Patch[1], s.Overlap) {
			for _, x := range WindowStarts(padded[2], s.Patch[2], s.Overlap) {
				starts = append(starts, [3]int{z, y, x})
			}
		}
	}
	flips := [][]int64{nil}
	if s.Mirror {
		flips = [][]int64{nil, {4}, {3}, {3, 4}, {2}, {2, 4}, {2, 3}, {2, 3, 4}}
	}
	bs := max(s.Batch, 1)
	window := func(t torchx.Tensor, st [3]int) torchx.Tensor {
		t = torchx.Narrow(t, 2, int64(st[0]), pd)
		t = torchx.Narrow(t, 3, int64(st[1]), ph)
		return torchx.Narrow(t, 4, int64(st[2]), pw)
	}
	acc5, wsum5 := torchx.Unsqueeze(acc, 0), torchx.Unsqueeze(wsum, 0) // views, batch-shaped like the windows
	bar := progress.New(s.Log, len(starts), "predict", 5*time.Second)
	defer bar.Finish()
	torchx.NoGrad(func() {
		for i := 0; i < len(starts); i += bs {
			group := starts[i:min(i+bs, len(starts))]
			parts := make([]torchx.Tensor, len(group))
			for j, st := range group {
				parts[j] = window(vol, st)
			}
			x := torchx.Cat(parts, 0)
			var p torchx.Tensor
			for _, f := range flips {
				var q torchx.Tensor
				if f == nil {
					q = torchx.Softmax(net(x), 1)
				} else {
					q = torchx.Flip(torchx.Softmax(net(torchx.Flip(x, f...)), 1), f...)
				}
				if p.T == nil {
					p = q
				} else {
					p = torchx.Add(p, q)
				}
			}
			p = torchx.Mul(torchx.DivScalar(p, float64(len(flips))), gauss)
			for j, st := range group {
				a := window(acc5, st)
				torchx.CopyInto(a, torchx.Add(a, torchx.Narrow(p, 0, int64(j), 1)))
				w := window(wsum5, st)
				torchx.CopyInto(w, torchx.Add(w, gauss))
			}
			bar.Add(len(group), fmt.Sprintf("%d windows of %v", len(starts), s.Patch))
			torchx.GC()
		}
	})
	probs := torchx.Div(acc, wsum)
	probs = torchx.Narrow(probs, 1, int64(padBelow[0]), int64(shape[0]))
	probs = torchx.Narrow(probs, 2, int64(padBelow[1]), int64(shape[1]))
	return torchx.Contiguous(torchx.Narrow(probs, 3, int64(padBelow[2]), int64(shape[2])))
}

// Predict returns the most probable class of every voxel of img (D×H×W).
func (s SlidingWindow) Predict(img []float32, shape [3]int, classes int, net PatchNet) ([]int32, error) {
	probs, err := s.Probabilities(img, shape, classes, net)
	if err != nil {
		return nil, err
	}
	var idx []int64
	if err := torchx.Try(func() { idx = torchx.Int64s(torchx.Argmax(probs, 0, false)) }); err != nil {
		return nil, err
	}
	out := make([]int32, len(idx))
	for i, v := range idx {
		out[i] = int32(v)
	}
	return out, nil
}
