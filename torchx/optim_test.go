package torchx

import (
	"math"
	"testing"
)

// quadratic loss ½·Σ c·p², gradient c·p: every update below is computed by hand.
var quadC = []float64{1, 3, 0.5}

func quadStep(o *Optimizer, p Tensor) {
	o.ZeroGrad()
	Backward(MulScalar(Sum(Mul(FromFloat64(quadC, 3), Pow(p, 2)), false), 0.5))
	o.Step()
}

func param(v []float64) Tensor {
	p := FromFloat64(v, int64(len(v)))
	SetRequiresGrad(p, true)
	return p
}

// inForeachModes runs f with libtorch's per-parameter loop and with the multi-tensor path.
func inForeachModes(t *testing.T, f func(t *testing.T)) {
	for _, m := range []struct {
		name string
		m    ForeachMode
	}{{"per-parameter", ForeachOff}, {"foreach", ForeachOn}} {
		t.Run(m.name, func(t *testing.T) {
			SetOptimizerForeach(m.m)
			defer SetOptimizerForeach(ForeachAuto)
			f(t)
		})
	}
}

func TestAdamWMatchesFormula(t *testing.T) { inForeachModes(t, testAdamWMatchesFormula) }

func TestSGDNesterovMatchesFormula(t *testing.T) { inForeachModes(t, testSGDNesterovMatchesFormula) }

func TestOptimizerStateResume(t *testing.T) { inForeachModes(t, testOptimizerStateResume) }

func testAdamWMatchesFormula(t *testing.T) {
	p0 := []float64{1, -2, 0.5}
	const lr, b1, b2, eps, wd = 0.1, 0.9, 0.999, 1e-8, 0.05
	p := param(p0)
	o := NewAdamW([]Tensor{p}, AdamWOpts{LR: lr, Beta1: b1, Beta2: b2, Eps: eps, WeightDecay: wd})
	want := append([]float64(nil), p0...)
	m := make([]float64, 3)
	v := make([]float64, 3)
	for step := 1; step <= 3; step++ {
		quadStep(o, p)
		for i := range want {
			g := quadC[i] * want[i]
			want[i] -= lr * wd * want[i] // decoupled weight decay
			m[i] = b1*m[i] + (1-b1)*g
			v[i] = b2*v[i] + (1-b2)*g*g
			mh := m[i] / (1 - math.Pow(b1, float64(step)))
			vh := v[i] / (1 - math.Pow(b2, float64(step)))
			want[i] -= lr * mh / (math.Sqrt(vh) + eps)
		}
		assertClose(t, "adamw", Float64s(p), want, 1e-12)
	}
	if o.LR() != lr {
		t.Fatalf("lr %g", o.LR())
	}
	o.SetLR(0.01)
	if o.LR() != 0.01 {
		t.Fatalf("lr after SetLR %g", o.LR())
	}
}

func testSGDNesterovMatchesFormula(t *testing.T) {
	p0 := []float64{1, -2, 0.5}
	const lr, mom, wd = 0.05, 0.9, 0.01
	p := param(p0)
	o := NewSGD([]Tensor{p}, SGDOpts{LR: lr, Momentum: mom, WeightDecay: wd, Nesterov: true})
	want := append([]float64(nil), p0...)
	buf := make([]float64, 3)
	for step := 1; step <= 3; step++ {
		quadStep(o, p)
		for i := range want {
			g := quadC[i]*want[i] + wd*want[i]
			if step == 1 {
				buf[i] = g
			} else {
				buf[i] = mom*buf[i] + g
			}
			want[i] -= lr * (g + mom*buf[i])
		}
		assertClose(t, "sgd nesterov", Float64s(p), want, 1e-12)
	}
	if err := Try(func() { NewSGD([]Tensor{p}, SGDOpts{LR: 1, Nesterov: true}) }); err == nil {
		t.Fatal("Nesterov without momentum accepted")
	}
}

// Saving the optimizer state after 3 steps and loading it into a fresh optimizer over a
// copy of the parameters must continue exactly as the uninterrupted run.
func testOptimizerStateResume(t *testing.T) {
	for _, kind := range []string{"adamw", "sgd"} {
		t.Run(kind, func(t *testing.T) {
			mk := func(p Tensor) *Optimizer {
				if kind == "adamw" {
					return NewAdamW([]Tensor{p}, AdamWOpts{LR: 0.1, WeightDecay: 0.01})
				}
				return NewSGD([]Tensor{p}, SGDOpts{LR: 0.05, Momentum: 0.9, Nesterov: true})
			}
			p := param([]float64{1, -2, 0.5})
			o := mk(p)
			for i := 0; i < 3; i++ {
				quadStep(o, p)
			}
			state := o.State()
			mid := Float64s(p)
			for i := 0; i < 2; i++ {
				quadStep(o, p)
			}
			want := Float64s(p)

			q := param(mid)
			o2 := mk(q)
			if err := o2.LoadState(state); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 2; i++ {
				quadStep(o2, q)
			}
			assertClose(t, "resumed", Float64s(q), want, 0)
			if err := o2.LoadState([]byte("not an archive")); err == nil {
				t.Fatal("garbage state accepted")
			}
			o2.Close()
			o2.Close()
		})
	}
}

func TestSchedules(t *testing.T) {
	s := StepLR{Base: 1e-4, StepSize: 2, Gamma: 0.5}
	for step, want := range []float64{1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5} {
		if got := s.LR(step); math.Abs(got-want) > 1e-18 {
			t.Fatalf("step lr at %d = %g want %g", step, got, want)
		}
	}
	p := PolyLR{Base: 0.01, Total: 1000, Power: 0.9}
	if got, want := p.LR(500), 0.01*math.Pow(0.5, 0.9); math.Abs(got-want) > 1e-15 {
		t.Fatalf("poly lr %g want %g", got, want)
	}
	if p.LR(0) != 0.01 || p.LR(1000) != 0 {
		t.Fatalf("poly ends %g %g", p.LR(0), p.LR(1000))
	}
	if (ConstantLR{Base: 3}).LR(99) != 3 {
		t.Fatal("constant lr")
	}
}

func TestClipGradNorm(t *testing.T) {
	inForeachModes(t, func(t *testing.T) { testClipGradNorm(t, false) })
	inForeachModes(t, func(t *testing.T) { testClipGradNorm(t, true) })
}

func testClipGradNorm(t *testing.T, async bool) {
	clip := ClipGradNorm
	if async { // the same scaling; the norm is not read back
		clip = func(ps []Tensor, max float64) float64 { ClipGradNormAsync(ps, max); return math.NaN() }
	}
	// Two parameters with gradients c·p: the joint norm is √Σ(c·p)², computed by hand.
	a, b := param([]float64{1, -2}), param([]float64{2})
	Backward(Add(Sum(Mul(FromFloat64([]float64{3, 4}, 2), a), false), Sum(MulScalar(b, 12), false)))
	// gradients: (3, 4) and (12): norm 13.
	unused := param([]float64{5}) // no gradient: skipped, not an error
	norm := clip([]Tensor{a, b, unused}, 6.5)
	if !async && math.Abs(norm-13) > 1e-9 {
		t.Fatalf("norm %v, want 13", norm)
	}
	// Scaled by 6.5/(13+1e-6), as torch.nn.utils.clip_grad_norm_ does.
	s := 6.5 / (13 + 1e-6)
	assertClose(t, "grad a", Float64s(Grad(a)), []float64{3 * s, 4 * s}, 1e-9)
	assertClose(t, "grad b", Float64s(Grad(b)), []float64{12 * s}, 1e-9)
	// Below the bound nothing changes.
	if n := clip([]Tensor{a, b}, 100); !async && math.Abs(n-6.5) > 1e-5 {
		t.Fatalf("second norm %v, want 6.5", n)
	}
	assertClose(t, "grad a unchanged", Float64s(Grad(a)), []float64{3 * s, 4 * s}, 1e-9)
}

// foreachModel is a few parameter tensors of different shapes, one of them unused (no
// gradient), with a loss that couples them.
func foreachModel(dev string) []Tensor {
	ManualSeed(5)
	var ps []Tensor
	for _, sh := range [][]int64{{3, 4}, {4}, {2, 3, 5}, {7}} {
		p := Randn(sh, Float32, dev)
		SetRequiresGrad(p, true)
		ps = append(ps, p)
	}
	return ps
}

func foreachLoss(ps []Tensor, step int) {
	x := Sum(Mul(ps[0], ps[0]), false)
	x = Add(x, MulScalar(Sum(Pow(ps[1], 3), false), float64(step+1)))
	x = Add(x, Sum(Mul(ps[2], ps[2]), false))
	Backward(x) // ps[3] takes no part: its gradient stays undefined
}

func trainForeach(dev string, mk func([]Tensor) *Optimizer, modes []ForeachMode) [][]float32 {
	ps := foreachModel(dev)
	o := mk(ps)
	defer o.Close()
	for i, m := range modes {
		SetOptimizerForeach(m)
		o.ZeroGrad()
		foreachLoss(ps, i)
		o.Step()
	}
	SetOptimizerForeach(ForeachAuto)
	var out [][]float32
	for _, p := range ps {
		out = append(out, Float32s(p))
	}
	return out
}

var foreachOptimizers = []struct {
	name string
	mk   func([]Tensor) *Optimizer
}{
	{"adamw", func(ps []Tensor) *Optimizer { return NewAdamW(ps, AdamWOpts{LR: 0.05, WeightDecay: 0.01}) }},
	{"sgd-nesterov", func(ps []Tensor) *Optimizer {
		return NewSGD(ps, SGDOpts{LR: 0.01, Momentum: 0.99, WeightDecay: 3e-5, Nesterov: true})
	}},
	{"sgd-plain", func(ps []Tensor) *Optimizer { return NewSGD(ps, SGDOpts{LR: 0.01}) }},
}

// The multi-tensor path is libtorch's per-parameter arithmetic: on the CPU bit for bit, over
// several steps, over parameters of several shapes and one without a gradient, and mixed
// with the per-parameter path mid-run (the two share libtorch's state).
func TestForeachEqualsPerParameter(t *testing.T) {
	off, on := ForeachOff, ForeachOn
	for _, o := range foreachOptimizers {
		t.Run(o.name, func(t *testing.T) {
			want := trainForeach("cpu", o.mk, []ForeachMode{off, off, off, off, off})
			// The first step creates libtorch's state (momentum buffers, moments) through its own
			// loop; every later "on" step must take the multi-tensor path.
			first := int64(1)
			if o.name == "sgd-plain" {
				first = 0 // no state to create
			}
			for name, c := range map[string]struct {
				modes []ForeachMode
				steps int64
			}{
				"foreach": {[]ForeachMode{on, on, on, on, on}, 5 - first},
				"mixed":   {[]ForeachMode{off, on, on, off, on}, 3},
			} {
				n0 := OptimizerForeachSteps()
				got := trainForeach("cpu", o.mk, c.modes)
				if n := OptimizerForeachSteps() - n0; n != c.steps {
					t.Errorf("%s: %d steps took the foreach path, want %d", name, n, c.steps)
				}
				for i := range want {
					if d := maxDiff(got[i], want[i]); d != 0 {
						t.Errorf("%s: parameter %d differs by %g", name, i, d)
					}
				}
			}
			if got := trainForeach("cpu", o.mk, nil); maxDiff(got[3], want[3]) != 0 {
				t.Error("the parameter without gradient moved")
			}
		})
	}
}
