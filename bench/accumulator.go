package bench

import (
	"fmt"
	"math"
	"math/rand"
	"os"
	"strings"
	"time"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/infer"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/runs"
	"github.com/sli2vol/sli2vol/torchx"
)

// The accumulator row (issue #18): one sliding-window prediction labelled twice in one
// process, its K×D×H×W probability sum first on the host (a 1-byte bound forces it) and
// then on the device (no bound), with each side's time, peak host and GPU memory, and
// whether the labels are the same. Go alone: PyTorch has no counterpart to compare.

// AccumulatorOptions is one host-vs-device accumulator comparison.
type AccumulatorOptions struct {
	Device  string // cpu, cuda
	Classes int
	Shape   [3]int // D×H×W
	Patch   [3]int
	Mirror  bool
	Batch   int // windows per forward pass
	// UNETR, when set, predicts with that config's UNETR++ (seeded, untrained, Classes
	// outputs); nil: a cheap per-voxel network (a·x + a bias by place in the patch), so that
	// the row measures the accumulator rather than a network, and runs on a CPU.
	UNETR        *configs.Config
	GPUMemoryCmd string // nvidia-smi: each side's peak GPU memory ("" skips)
	Seed         int64
}

// IssueAccumulatorOptions is the issue's check: 42 classes on a 256×256×200 volume with the
// default config's patch (64×128×128), mirroring and window batch; on CUDA the GPU memory
// is read with nvidia-smi.
func IssueAccumulatorOptions(device string) AccumulatorOptions {
	o := AccumulatorOptions{Device: device, Classes: 42, Shape: [3]int{200, 256, 256}, Patch: [3]int{64, 128, 128},
		Mirror: true, Batch: 2, Seed: 1}
	if device != "cpu" {
		o.GPUMemoryCmd = "nvidia-smi"
	}
	return o
}

// AccumulatorSide is one prediction's cost.
type AccumulatorSide struct {
	Placement string  // the prediction's own line (infer.Accumulator)
	Seconds   float64 // wall time of Predict
	// Host memory: RSS before the prediction and its peak during it (VmHWM, reset before).
	RSSBeforeMiB, PeakRSSMiB float64
	// GPU memory (nvidia-smi; 0 where not read, see AccumulatorResult.GPUMeasured): the
	// card's used memory before the prediction, above the level when the row started (CUDA
	// context, the network, what the caching allocator kept from earlier work), and the
	// peak above that level.
	GPUBeforeMiB, PeakGPUMiB float64
}

// AccumulatorResult is the row: the two sides and whether they labelled alike.
type AccumulatorResult struct {
	Options     AccumulatorOptions
	Host, Dev   AccumulatorSide
	SameLabels  bool
	Differing   int  // voxels labelled differently
	GPUMeasured bool // both sides' GPU memory read (nvidia-smi)
}

// AccumulatorRow runs the comparison. The host side runs first: the caching allocator then
// keeps only a window group's temporaries when the device side starts, so the device side's
// GPU peak is not hidden in memory the host side left cached (the other order would be).
func AccumulatorRow(o AccumulatorOptions) (*AccumulatorResult, error) {
	net, err := accumulatorNet(o)
	if err != nil {
		return nil, err
	}
	r := rand.New(rand.NewSource(o.Seed))
	img := make([]float32, o.Shape[0]*o.Shape[1]*o.Shape[2])
	for i := range img {
		img[i] = float32(r.NormFloat64())
	}
	gpu := newGPUMemory(o.GPUMemoryCmd)
	start := math.NaN()
	if gpu != nil {
		start = gpu.usedMiB()
	}
	sw := infer.SlidingWindow{Patch: o.Patch, Overlap: 0.5, Mirror: o.Mirror, Batch: o.Batch, Device: o.Device}
	// A patch-sized warm-up: CUDA context, kernels and cuDNN's set-up fall in neither side.
	if _, err := sw.Predict(make([]float32, o.Patch[0]*o.Patch[1]*o.Patch[2]), o.Patch, o.Classes, net); err != nil {
		return nil, fmt.Errorf("accumulator row warm-up: %w", err)
	}
	res := &AccumulatorResult{Options: o}
	sw.MaxDeviceAccumulatorBytes = 1
	hostLabels, err := predictMeasured(sw, img, o, net, gpu, start, &res.Host)
	if err != nil {
		return nil, err
	}
	sw.MaxDeviceAccumulatorBytes = 0
	devLabels, err := predictMeasured(sw, img, o, net, gpu, start, &res.Dev)
	if err != nil {
		return nil, err
	}
	for i := range hostLabels {
		if hostLabels[i] != devLabels[i] {
			res.Differing++
		}
	}
	res.SameLabels = res.Differing == 0 && len(hostLabels) == len(devLabels)
	// NaN marks an unread level; the result stays JSON (which has no NaN) with the flag.
	res.GPUMeasured = true
	for _, v := range []*float64{&res.Host.GPUBeforeMiB, &res.Host.PeakGPUMiB, &res.Dev.GPUBeforeMiB, &res.Dev.PeakGPUMiB} {
		if math.IsNaN(*v) {
			*v, res.GPUMeasured = 0, false
		}
	}
	return res, nil
}

// predictMeasured labels img with sw and records its time and memory in side.
func predictMeasured(sw infer.SlidingWindow, img []float32, o AccumulatorOptions, net infer.PatchNet, gpu *gpuMemory, start float64, side *AccumulatorSide) ([]int32, error) {
	var log strings.Builder
	sw.Log = &log
	// Writing 5 to clear_refs resets VmHWM to the current RSS (Linux ≥ 4.0), so that the
	// peak is this prediction's, not the process's so far.
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	side.RSSBeforeMiB = rssMiB("VmRSS")
	side.GPUBeforeMiB, side.PeakGPUMiB = math.NaN(), math.NaN()
	var labels []int32
	predict := func() error {
		t0 := time.Now()
		var err error
		labels, err = sw.Predict(img, o.Shape, o.Classes, net)
		side.Seconds = time.Since(t0).Seconds()
		return err
	}
	var err error
	if gpu != nil {
		side.GPUBeforeMiB = gpu.usedMiB() - start
		side.PeakGPUMiB, err = gpu.during(predict)
	} else {
		err = predict()
	}
	if err != nil {
		return nil, fmt.Errorf("accumulator row (bound %d bytes): %w", sw.MaxDeviceAccumulatorBytes, err)
	}
	side.PeakRSSMiB = rssMiB("VmHWM")
	side.Placement, _, _ = strings.Cut(strings.TrimPrefix(log.String(), "sliding window: "), "\n")
	return labels, nil
}

// accumulatorNet is the row's network on o.Device, its tensors made before either side runs.
func accumulatorNet(o AccumulatorOptions) (infer.PatchNet, error) {
	torchx.ManualSeed(uint64(o.Seed))
	if o.UNETR != nil {
		m, err := models.NewUNETRPP(runs.UNETRConfig(o.UNETR.UNETR, 1, o.Classes))
		if err != nil {
			return nil, fmt.Errorf("accumulator row: %w", err)
		}
		if err := torchx.Try(func() { models.To(m, o.Device) }); err != nil {
			return nil, fmt.Errorf("accumulator row: %w", err)
		}
		models.SetTraining(m, false)
		return func(x torchx.Tensor) torchx.Tensor { return m.Forward(x, false)[0] }, nil
	}
	var a, bias torchx.Tensor
	err := torchx.Try(func() {
		k, p := int64(o.Classes), o.Patch
		a = torchx.Randn([]int64{1, k, 1, 1, 1}, torchx.Float32, o.Device)
		bias = torchx.Randn([]int64{1, k, int64(p[0]), int64(p[1]), int64(p[2])}, torchx.Float32, o.Device)
	})
	if err != nil {
		return nil, fmt.Errorf("accumulator row: %w", err)
	}
	return func(x torchx.Tensor) torchx.Tensor { return torchx.Add(torchx.Mul(x, a), bias) }, nil
}

// Markdown is the row for BENCHMARKS.md: a sentence and a host/device table.
func (r *AccumulatorResult) Markdown() string {
	o := r.Options
	net := "a per-voxel affine network"
	if o.UNETR != nil {
		net = "UNETR++ (untrained)"
	}
	same := "**the same labels**"
	if !r.SameLabels {
		same = fmt.Sprintf("**%d voxels labelled differently**", r.Differing)
	}
	var md strings.Builder
	fmt.Fprintf(&md, "\nSliding-window sums on the host vs the device (%s, %d classes, %d×%d×%d volume, patch %v, mirroring %v, "+
		"window batch %d, device %s): %s.\n\n| | sums on the host | sums on the device |\n|---|---|---|\n",
		net, o.Classes, o.Shape[0], o.Shape[1], o.Shape[2], o.Patch, o.Mirror, o.Batch, o.Device, same)
	row := func(name, format string, f func(AccumulatorSide) any) {
		fmt.Fprintf(&md, "| %s | "+format+" | "+format+" |\n", name, f(r.Host), f(r.Dev))
	}
	row("placement", "%s", func(s AccumulatorSide) any { return s.Placement })
	row("time (s)", "%.2f", func(s AccumulatorSide) any { return s.Seconds })
	row("peak host RSS (MiB; before)", "%s", func(s AccumulatorSide) any {
		return fmt.Sprintf("%.0f (%.0f)", s.PeakRSSMiB, s.RSSBeforeMiB)
	})
	if r.GPUMeasured {
		row("peak GPU memory above the level before (MiB; that level above the row's start)", "%s", func(s AccumulatorSide) any {
			return fmt.Sprintf("%.0f (%.0f)", s.PeakGPUMiB, s.GPUBeforeMiB)
		})
	}
	return md.String()
}
