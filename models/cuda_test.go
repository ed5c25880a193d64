package models

import (
	"fmt"
	"math"
	"testing"

	"github.com/sli2vol/sli2vol/torchx"
)

// The same weights give the same reconstruction and gradients on CUDA as on the CPU.
func TestCFNCUDAMatchesCPU(t *testing.T) {
	if !torchx.CUDAAvailable() {
		t.Skip("no CUDA device")
	}
	cfg := smallModelConfig(true)
	torchx.ManualSeed(2)
	cpu, _ := NewCFN(cfg)
	torchx.ManualSeed(2)
	gpu, _ := NewCFN(cfg)
	To(gpu, "cuda")
	sJ, sJ1, plJ, plJ1 := shiftedPair(2, 48)
	loss := func(m *CFN, dev string) (float64, []float32) {
		mv := func(x Tensor) Tensor { return torchx.To(x, dev, -1) }
		r := m.Reconstruct(mv(sJ), mv(sJ1), mv(plJ), mv(plJ1))
		l := torchx.L1Loss(r, mv(sJ1), torchx.ReduceMean)
		torchx.Backward(l)
		return torchx.Item(l), torchx.Float32s(torchx.Grad(m.Encoder.Conv1.Weight))
	}
	lc, gc := loss(cpu, "cpu")
	lg, gg := loss(gpu, "cuda")
	var worst float64
	for i := range gc {
		worst = math.Max(worst, math.Abs(float64(gc[i]-gg[i])))
	}
	t.Logf("loss cpu %.6f cuda %.6f; stem grad max diff %.2e", lc, lg, worst)
	if math.Abs(lc-lg) > 1e-4 || worst > 1e-3 {
		t.Fatalf("CPU and CUDA disagree: loss %g vs %g, grad diff %g", lc, lg, worst)
	}
}

// BenchmarkCFNTrainStep: one OEG-CFN AdamW step at the paper's config (w=16, R=6, GEIG),
// batch 4 of 256² on CUDA (96² on the CPU).
func BenchmarkCFNTrainStep(b *testing.B) { benchStep(b, false) }

// BenchmarkCFNTrainStepAMP: the same with bf16 autocast, channels-last and cuDNN benchmark.
func BenchmarkCFNTrainStepAMP(b *testing.B) { benchStep(b, true) }

func benchStep(b *testing.B, amp bool) {
	dev, hw := "cpu", 96
	if torchx.CUDAAvailable() {
		dev, hw = "cuda", 256
	}
	torchx.ManualSeed(0)
	m, _ := NewCFN(paperCFNConfig(true))
	To(m, dev)
	if amp {
		ToChannelsLast(m)
		torchx.SetCUDNNBenchmark(true)
		defer torchx.SetCUDNNBenchmark(false)
	}
	opt := torchx.NewAdamW(Parameters(m), torchx.AdamWOpts{LR: 1e-4, WeightDecay: 0.005})
	x := func() Tensor {
		t := torchx.Rand([]int64{4, 1, int64(hw), int64(hw)}, torchx.Float32, dev)
		if amp {
			t = torchx.ChannelsLast(t)
		}
		return t
	}
	sJ, sJ1, plJ, plJ1 := x(), x(), torchx.Round(x()), torchx.Round(x())
	step := func() {
		opt.ZeroGrad()
		var l Tensor
		fwd := func() { l = torchx.SmoothL1Loss(m.Reconstruct(sJ, sJ1, plJ, plJ1), sJ1, torchx.ReduceMean, 1) }
		if amp {
			torchx.Autocast(dev, torchx.BFloat16, fwd)
		} else {
			fwd()
		}
		torchx.Backward(l)
		opt.Step()
		torchx.Item(l)
		torchx.GC()
	}
	step() // warm-up (cuDNN algorithm choice, allocator)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		step()
	}
	b.ReportMetric(float64(4*b.N)/b.Elapsed().Seconds(), "samples/s")
}

// bf16 autocast on the GPU: the reconstruction loss stays within 2% of float32's, and
// channels-last weights give the float32 result.
func TestCFNAutocastCUDA(t *testing.T) {
	if !torchx.CUDAAvailable() {
		t.Skip("no CUDA device")
	}
	torchx.ManualSeed(4)
	m, _ := NewCFN(paperCFNConfig(true))
	To(m, "cuda")
	x := func() Tensor {
		return torchx.MulScalar(torchx.Rand([]int64{2, 1, 96, 96}, torchx.Float32, "cuda"), 255)
	}
	sJ, sJ1, plJ, plJ1 := x(), x(), torchx.Round(torchx.DivScalar(x(), 255)), torchx.Round(torchx.DivScalar(x(), 255))
	loss := func() float64 {
		return torchx.Item(torchx.SmoothL1Loss(m.Reconstruct(sJ, sJ1, plJ, plJ1), sJ1, torchx.ReduceMean, 1))
	}
	var f32, bf16, cl float64
	torchx.NoGrad(func() {
		SetTraining(m, false)
		f32 = loss()
		torchx.Autocast("cuda", torchx.BFloat16, func() { bf16 = loss() })
		ToChannelsLast(m)
		cl = loss()
	})
	fmt.Printf("autocast check: loss float32 %.5f, bf16 autocast %.5f, channels-last %.5f\n", f32, bf16, cl)
	if math.Abs(bf16-f32) > 0.02*f32 || math.Abs(cl-f32) > 1e-3*f32 {
		t.Fatalf("bf16 %.5f / channels-last %.5f vs float32 %.5f", bf16, cl, f32)
	}
}
