package torchx

import (
	"fmt"
	"math"
	"math/rand"
	"testing"
)

func randVals(r *rand.Rand, n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = r.NormFloat64()
	}
	return v
}

func assertClose(t *testing.T, name string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(got[i] - want[i]); d > tol*(1+math.Abs(want[i])) || math.IsNaN(got[i]) {
			t.Fatalf("%s[%d] = %.8g, want %.8g (|diff| %.3g)", name, i, got[i], want[i], d)
		}
	}
}

func assertShape(t *testing.T, name string, x Tensor, want ...int64) {
	t.Helper()
	got := x.Shape()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: shape %v, want %v", name, got, want)
	}
}

// gradCheck compares autograd's gradient of sum(f(x)·w), for a fixed random w, with central
// finite differences in float64.
func gradCheck(t *testing.T, name string, x []float64, shape []int64, f func(Tensor) Tensor) {
	t.Helper()
	r := rand.New(rand.NewSource(7))
	xt := FromFloat64(x, shape...)
	SetRequiresGrad(xt, true)
	y := f(xt)
	w := randVals(r, int(Numel(y)))
	wt := FromFloat64(w, y.Shape()...)
	Backward(Sum(Mul(y, wt), false))
	got := Float64s(Grad(xt))
	eval := func(v []float64) float64 {
		var s float64
		NoGrad(func() { s = Item(Sum(Mul(f(FromFloat64(v, shape...)), wt), false)) })
		return s
	}
	const eps = 1e-6
	want := make([]float64, len(x))
	for i := range x {
		p := append([]float64(nil), x...)
		m := append([]float64(nil), x...)
		p[i] += eps
		m[i] -= eps
		want[i] = (eval(p) - eval(m)) / (2 * eps)
	}
	assertClose(t, name+" grad", got, want, 1e-5)
}

// idx4 is the row-major index of (a,b,c,d) in a tensor of shape s.
func idx4(s [4]int, a, b, c, d int) int { return ((a*s[1]+b)*s[2]+c)*s[3] + d }

// naiveConv2d is the textbook definition of torch.nn.functional.conv2d.
func naiveConv2d(x []float64, xs [4]int, w []float64, ws [4]int, b []float64, stride, pad, dil [2]int, groups int) ([]float64, [4]int) {
	n, cin, hh, ww := xs[0], xs[1], xs[2], xs[3]
	cout, cpg, kh, kw := ws[0], ws[1], ws[2], ws[3]
	oh := (hh+2*pad[0]-dil[0]*(kh-1)-1)/stride[0] + 1
	ow := (ww+2*pad[1]-dil[1]*(kw-1)-1)/stride[1] + 1
	os := [4]int{n, cout, oh, ow}
	out := make([]float64, n*cout*oh*ow)
	opg := cout / groups
	_ = cin
	for in := 0; in < n; in++ {
		for co := 0; co < cout; co++ {
			g := co / opg
			for y := 0; y < oh; y++ {
				for x0 := 0; x0 < ow; x0++ {
					s := 0.0
					if b != nil {
						s = b[co]
					}
					for ci := 0; ci < cpg; ci++ {
						for ky := 0; ky < kh; ky++ {
							for kx := 0; kx < kw; kx++ {
								iy := y*stride[0] - pad[0] + ky*dil[0]
								ix := x0*stride[1] - pad[1] + kx*dil[1]
								if iy < 0 || iy >= hh || ix < 0 || ix >= ww {
									continue
								}
								s += x[idx4(xs, in, g*cpg+ci, iy, ix)] * w[idx4(ws, co, ci, ky, kx)]
							}
						}
					}
					out[idx4(os, in, co, y, x0)] = s
				}
			}
		}
	}
	return out, os
}
