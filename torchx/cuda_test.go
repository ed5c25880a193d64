package torchx

import (
	"fmt"
	"math"
	"testing"
)

func needCUDA(t testing.TB) {
	if !CUDAAvailable() {
		t.Skip("no CUDA device: CUDA checks run on a GPU machine (see third_party/gpu)")
	}
}

func maxDiff(a, b []float32) float64 {
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i]-b[i])))
	}
	return m
}

// The fused affinity on CUDA equals the CPU result, forward and backward.
func TestAffinityCUDAMatchesCPU(t *testing.T) {
	needCUDA(t)
	ManualSeed(9)
	const B, C, H, W, R = 2, 16, 33, 40, 6

	q := Randn([]int64{B, C, H, W}, Float32, "cpu")
	k := Randn([]int64{B, C, H, W}, Float32, "cpu")
	m := Randn([]int64{B, 3, H, W}, Float32, "cpu")
	run := func(dev string) (out, agg, gq, gk, gm []float32) {
		qd, kd, md := Detach(To(q, dev, -1)), Detach(To(k, dev, -1)), Detach(To(m, dev, -1))
		for _, x := range []Tensor{qd, kd, md} {
			SetRequiresGrad(x, true)
		}
		c := Correlation(qd, kd, R)
		a := Aggregate(Softmax(c, 1), md, R)
		Backward(Add(Sum(Mul(c, c), false), Sum(Mul(a, a), false)))
		return Float32s(c), Float32s(a), Float32s(Grad(qd)), Float32s(Grad(kd)), Float32s(Grad(md))
	}
	c1, a1, q1, k1, m1 := run("cpu")
	c2, a2, q2, k2, m2 := run("cuda")
	for _, p := range []struct {
		name string
		a, b []float32
	}{{"correlation", c1, c2}, {"aggregate", a1, a2}, {"grad q", q1, q2}, {"grad k", k1, k2}, {"grad m", m1, m2}} {
		d := maxDiff(p.a, p.b)
		t.Logf("%s: max |cpu − cuda| %.2e", p.name, d)
		if d > 1e-3 {
			t.Errorf("%s differs between CPU and CUDA by %g", p.name, d)
		}
	}
}

// Uploads through page-locked memory do not wait for the GPU, and the staging buffers are
// reused by the caching host allocator: none may be handed out again before its copy has
// run. Many uploads queued behind a long computation, each from a buffer the caller
// overwrites at once, must all arrive intact.
func TestStagedUploadsCUDA(t *testing.T) {
	needCUDA(t)
	big := MulScalar(Randn([]int64{4096, 4096}, Float32, "cuda"), 1.0/64)
	slow := big
	for i := 0; i < 8; i++ { // tens of milliseconds of GPU work queued ahead of the uploads
		slow = Matmul(slow, big)
	}
	const n, size = 64, 1 << 16
	buf := make([]float32, size)
	ups := make([]Tensor, n)
	for i := range ups {
		for j := range buf {
			buf[j] = float32(i*size + j)
		}
		ups[i] = FromFloat32On(buf, "cuda", size)
		Free(FromFloat32On(buf, "cuda", size)) // freed at once: its staging buffer must wait too
	}
	_ = Float32s(Sum(slow, false))
	bad := 0
	for i, u := range ups {
		got := Float32s(u)
		for j, v := range got {
			if v != float32(i*size+j) {
				bad++
				if bad < 5 {
					t.Errorf("upload %d element %d: %v, want %v", i, j, v, float32(i*size+j))
				}
				break
			}
		}
	}
}

// Ops the models use give the same numbers on CUDA as on the CPU.
func TestOpsCUDAMatchCPU(t *testing.T) {
	needCUDA(t)
	ManualSeed(10)
	x := Randn([]int64{2, 4, 16, 16}, Float32, "cpu")
	w := Randn([]int64{6, 4, 3, 3}, Float32, "cpu")
	b := Randn([]int64{6}, Float32, "cpu")
	ops := map[string]func(dev string) Tensor{
		"conv2d": func(dev string) Tensor {
			return Conv2d(To(x, dev, -1), To(w, dev, -1), To(b, dev, -1), ConvOpts{Padding: []int64{1}})
		},
		"batchnorm": func(dev string) Tensor {
			return BatchNorm(To(x, dev, -1), Tensor{}, Tensor{}, Tensor{}, Tensor{}, true, 0.1, 1e-5)
		},
		"pad+softmax": func(dev string) Tensor {
			return Softmax(Pad(To(x, dev, -1), []int64{2, 2, 2, 2}, PadReplicate, 0), 1)
		},
		"bilinear": func(dev string) Tensor { return Interpolate(To(x, dev, -1), []int64{23, 9}, Bilinear, false) },
		"smoothl1": func(dev string) Tensor {
			return SmoothL1Loss(To(x, dev, -1), Zeros(x.Shape(), Float32, dev), ReduceMean, 1)
		},
	}
	for name, f := range ops {
		d := maxDiff(Float32s(f("cpu")), Float32s(f("cuda")))
		if d > 1e-4 {
			t.Errorf("%s: CPU and CUDA differ by %g", name, d)
		}
	}
}

// BenchmarkAffinity times correlation + softmax + aggregate forward and backward with each
// strategy: on CUDA at the paper's scale (B=4, 128 channels = two 64-d features
// concatenated, R=6) at 96² and 256², on the CPU at 1×128×128².
func BenchmarkAffinity(b *testing.B) {
	sizes := []int64{128}
	if CUDAAvailable() {
		sizes = []int64{96, 256}
	}
	for _, s := range []struct {
		name string
		s    AffinityStrategy
	}{{"shifts", AffinityShifts}, {"rows", AffinityRows}, {"unfold", AffinityUnfold}} {
		for _, hw := range sizes {
			b.Run(fmt.Sprintf("%s/%d", s.name, hw), func(b *testing.B) {
				SetAffinityStrategy(s.s)
				defer SetAffinityStrategy(AffinityAuto)
				benchmarkAffinity(b, hw)
			})
		}
	}
}

func benchmarkAffinity(b *testing.B, hw int64) {
	dev := "cpu"
	shape := []int64{1, 128, hw, hw}
	if CUDAAvailable() {
		dev, shape = "cuda", []int64{4, 128, hw, hw}
	}
	q := Randn(shape, Float32, dev)
	k := Randn(shape, Float32, dev)
	m := Randn([]int64{shape[0], 1, shape[2], shape[3]}, Float32, dev)
	SetRequiresGrad(q, true)
	SetRequiresGrad(k, true)
	step := func() {
		TidyDo(func() {
			a := Aggregate(Softmax(Correlation(q, k, 6), 1), m, 6)
			Backward(Sum(a, false))
			Item(Sum(Grad(q), false)) // synchronises the device
		})
	}
	step() // the caching allocator's first requests are not what a training loop pays
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		step()
	}
}

// On CUDA (auto = foreach) the multi-tensor optimizers take their own path after the first
// step, agree with libtorch's per-parameter loop to float rounding, and share its state
// (a per-parameter step mid-run continues the same moments).
func TestForeachCUDAMatchesPerParameter(t *testing.T) {
	needCUDA(t)
	off, auto := ForeachOff, ForeachAuto
	for _, o := range foreachOptimizers {
		want := trainForeach("cuda", o.mk, []ForeachMode{off, off, off, off, off})
		for name, modes := range map[string][]ForeachMode{"auto": {auto, auto, auto, auto, auto}, "mixed": {off, auto, auto, off, auto}} {
			n0 := OptimizerForeachSteps()
			got := trainForeach("cuda", o.mk, modes)
			n := OptimizerForeachSteps() - n0
			if n < 3 {
				t.Errorf("%s %s: only %d steps took the foreach path", o.name, name, n)
			}
			for i := range want {
				d := maxDiff(got[i], want[i])
				t.Logf("%s %s: parameter %d max |foreach − per-parameter| %.2e (%d foreach steps)", o.name, name, i, d, n)
				if d > 1e-5 {
					t.Errorf("%s %s: parameter %d differs by %g", o.name, name, i, d)
				}
			}
		}
	}
}

// The driver's memory figures: free within total on a GPU; an error, not an abort, on a build
// or machine without one.
func TestCUDAMemInfo(t *testing.T) {
	free, total, err := CUDAMemInfo(0)
	if !CUDAAvailable() {
		if err == nil {
			t.Fatalf("no GPU, yet free %d total %d", free, total)
		}
		return
	}
	if err != nil || free <= 0 || free > total {
		t.Fatalf("free %d total %d: %v", free, total, err)
	}
}
