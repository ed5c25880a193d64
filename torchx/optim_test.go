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

func TestAdamWMatchesFormula(t *testing.T) {
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

func TestSGDNesterovMatchesFormula(t *testing.T) {
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
func TestOptimizerStateResume(t *testing.T) {
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
	// Two parameters with gradients c·p: the joint norm is √Σ(c·p)², computed by hand.
	a, b := param([]float64{1, -2}), param([]float64{2})
	Backward(Add(Sum(Mul(FromFloat64([]float64{3, 4}, 2), a), false), Sum(MulScalar(b, 12), false)))
	// gradients: (3, 4) and (12): norm 13.
	unused := param([]float64{5}) // no gradient: skipped, not an error
	norm := ClipGradNorm([]Tensor{a, b, unused}, 6.5)
	if math.Abs(norm-13) > 1e-9 {
		t.Fatalf("norm %v, want 13", norm)
	}
	// Scaled by 6.5/(13+1e-6), as torch.nn.utils.clip_grad_norm_ does.
	s := 6.5 / (13 + 1e-6)
	assertClose(t, "grad a", Float64s(Grad(a)), []float64{3 * s, 4 * s}, 1e-9)
	assertClose(t, "grad b", Float64s(Grad(b)), []float64{12 * s}, 1e-9)
	// Below the bound nothing changes.
	if n := ClipGradNorm([]Tensor{a, b}, 100); math.Abs(n-6.5) > 1e-5 {
		t.Fatalf("second norm %v, want 6.5", n)
	}
	assertClose(t, "grad a unchanged", Float64s(Grad(a)), []float64{3 * s, 4 * s}, 1e-9)
}
