package torchx

import (
	"fmt"
	"math"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"testing"
)

// naiveCorrelation is Eq. 2's logit written as the double loop it is.
func naiveCorrelation(q, k []float64, B, C, H, W, R int) []float64 {
	S := 2*R + 1
	out := make([]float64, B*S*S*H*W)
	for b := 0; b < B; b++ {
		for dy := -R; dy <= R; dy++ {
			for dx := -R; dx <= R; dx++ {
				d := (dy+R)*S + dx + R
				for y := 0; y < H; y++ {
					for x := 0; x < W; x++ {
						yy, xx := y+dy, x+dx
						if yy < 0 || yy >= H || xx < 0 || xx >= W {
							continue // zero padding
						}
						var s float64
						for c := 0; c < C; c++ {
							s += q[((b*C+c)*H+y)*W+x] * k[((b*C+c)*H+yy)*W+xx]
						}
						out[((b*S*S+d)*H+y)*W+x] = s
					}
				}
			}
		}
	}
	return out
}

// naiveAggregate is Eq. 4 written as a double loop.
func naiveAggregate(a, m []float64, B, C, H, W, R int) []float64 {
	S := 2*R + 1
	out := make([]float64, B*C*H*W)
	for b := 0; b < B; b++ {
		for c := 0; c < C; c++ {
			for y := 0; y < H; y++ {
				for x := 0; x < W; x++ {
					var s float64
					for dy := -R; dy <= R; dy++ {
						for dx := -R; dx <= R; dx++ {
							yy, xx := y+dy, x+dx
							if yy < 0 || yy >= H || xx < 0 || xx >= W {
								continue
							}
							d := (dy+R)*S + dx + R
							s += a[((b*S*S+d)*H+y)*W+x] * m[((b*C+c)*H+yy)*W+xx]
						}
					}
					out[((b*C+c)*H+y)*W+x] = s
				}
			}
		}
	}
	return out
}

// Every strategy (per shift, per window row, unfold) against the loops and finite differences.
func TestCorrelationAggregateAgainstLoops(t *testing.T) {
	for _, s := range []struct {
		name string
		s    AffinityStrategy
	}{{"shifts", AffinityShifts}, {"rows", AffinityRows}, {"unfold", AffinityUnfold}} {
		t.Run(s.name, func(t *testing.T) {
			SetAffinityStrategy(s.s)
			defer SetAffinityStrategy(AffinityAuto)
			testCorrelationAggregateAgainstLoops(t)
		})
	}
}

func testCorrelationAggregateAgainstLoops(t *testing.T) {
	r := rand.New(rand.NewSource(11))
	// Sizes where the window is larger than the slice on one axis exercise the borders.
	for _, c := range []struct{ B, C, H, W, R int }{{2, 3, 5, 6, 1}, {1, 2, 4, 7, 2}, {1, 4, 3, 3, 3}} {
		S := 2*c.R + 1
		q := randVals(r, c.B*c.C*c.H*c.W)
		k := randVals(r, c.B*c.C*c.H*c.W)
		a := randVals(r, c.B*S*S*c.H*c.W)
		shape := []int64{int64(c.B), int64(c.C), int64(c.H), int64(c.W)}
		ashape := []int64{int64(c.B), int64(S * S), int64(c.H), int64(c.W)}
		qt, kt, at := FromFloat64(q, shape...), FromFloat64(k, shape...), FromFloat64(a, ashape...)
		corr := Correlation(qt, kt, c.R)
		assertShape(t, "correlation", corr, ashape...)
		assertClose(t, "correlation", Float64s(corr), naiveCorrelation(q, k, c.B, c.C, c.H, c.W, c.R), 1e-12)
		agg := Aggregate(at, kt, c.R)
		assertShape(t, "aggregate", agg, shape...)
		assertClose(t, "aggregate", Float64s(agg), naiveAggregate(a, k, c.B, c.C, c.H, c.W, c.R), 1e-12)

		gradCheck(t, "correlation/q", q, shape, func(x Tensor) Tensor { return Correlation(x, kt, c.R) })
		gradCheck(t, "correlation/k", k, shape, func(x Tensor) Tensor { return Correlation(qt, x, c.R) })
		gradCheck(t, "aggregate/A", a, ashape, func(x Tensor) Tensor { return Aggregate(x, kt, c.R) })
		gradCheck(t, "aggregate/m", k, shape, func(x Tensor) Tensor { return Aggregate(at, x, c.R) })
	}
	// The same tensor as query and key (a slice's affinity with itself) gets both gradients.
	x := randVals(r, 2*5*5)
	gradCheck(t, "correlation/self", x, []int64{1, 2, 5, 5}, func(t Tensor) Tensor { return Correlation(t, t, 2) })
}

// A softmax affinity is a convex combination: aggregating a constant map returns it where
// the whole window lies inside the slice.
func TestAffinityPropagatesConstant(t *testing.T) {
	q := Randn([]int64{1, 4, 9, 9}, Float32, "cpu")
	A := Softmax(Correlation(q, q, 2), 1)
	out := Float32s(Aggregate(A, Full([]int64{1, 1, 9, 9}, 3, Float32, "cpu"), 2))
	v := out[4*9+4] // centre pixel: window fully inside
	if math.Abs(float64(v)-3) > 1e-5 {
		t.Fatalf("centre %g, want 3", v)
	}
}

func TestAffinityBadShapes(t *testing.T) {
	q := Zeros([]int64{1, 4, 8, 8}, Float32, "cpu")
	for name, f := range map[string]func(){
		"channels":   func() { Correlation(q, Zeros([]int64{1, 3, 8, 8}, Float32, "cpu"), 2) },
		"spatial":    func() { Correlation(q, Zeros([]int64{1, 4, 8, 7}, Float32, "cpu"), 2) },
		"rank":       func() { Correlation(Zeros([]int64{4, 8, 8}, Float32, "cpu"), q, 2) },
		"window":     func() { Aggregate(Zeros([]int64{1, 9, 8, 8}, Float32, "cpu"), q, 2) },
		"neg radius": func() { Correlation(q, q, -1) },
	} {
		if err := Try(f); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func statusKB(t *testing.T, field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			v, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return v
		}
	}
	t.Skipf("no %s in /proc/self/status", field)
	return 0
}

// A 64-channel 128×128 correlation at R=6, forward and backward, needs less than twice its
// output (11 MiB) in extra memory. Unfold would build a 64×169×128×128 tensor (709 MiB).
func TestCorrelationMemoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Skipf("cannot reset the peak RSS here: %v", err)
	}
	ManualSeed(3)
	q := Randn([]int64{1, 64, 128, 128}, Float32, "cpu")
	k := Randn([]int64{1, 64, 128, 128}, Float32, "cpu")
	SetRequiresGrad(q, true)
	SetRequiresGrad(k, true)
	GC()
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	base := statusKB(t, "VmRSS")
	out := Correlation(q, k, 6)
	Backward(Sum(out, false))
	peak := statusKB(t, "VmHWM")
	outKB := int64(169*128*128*4) / 1024
	extra := peak - base - outKB
	t.Logf("output %d KiB, extra at peak %d KiB (%.2f× output)", outKB, extra, float64(extra)/float64(outKB))
	if extra > 2*outKB {
		t.Fatalf("extra memory %d KiB exceeds 2× the output (%d KiB)", extra, 2*outKB)
	}
	if !Defined(Grad(q)) || !Defined(Grad(k)) {
		t.Fatal("no gradients")
	}
}

// The gradient the loss usually hands over is a broadcast view (of a sum's 1): both
// strategies must read it as it is, without a copy, and agree, for either op (unfold, through
// ATen's autograd, too).
func TestAffinityBroadcastGradient(t *testing.T) {
	grads := func(s AffinityStrategy, aggregate bool) [][]float64 {
		SetAffinityStrategy(s)
		defer SetAffinityStrategy(AffinityAuto)
		ManualSeed(4)
		q, k := Randn([]int64{2, 3, 6, 5}, Float64, "cpu"), Randn([]int64{2, 3, 6, 5}, Float64, "cpu")
		m := Randn([]int64{2, 2, 6, 5}, Float64, "cpu")
		for _, x := range []Tensor{q, k, m} {
			SetRequiresGrad(x, true)
		}
		out := Correlation(q, k, 2)
		if aggregate {
			out = Aggregate(Softmax(out, 1), m, 2)
		}
		Backward(Sum(out, false))
		g := [][]float64{Float64s(Grad(q)), Float64s(Grad(k))}
		if aggregate {
			g = append(g, Float64s(Grad(m)))
		}
		return g
	}
	for _, agg := range []bool{false, true} {
		shifts, rows, unfold := grads(AffinityShifts, agg), grads(AffinityRows, agg), grads(AffinityUnfold, agg)
		for i := range shifts {
			assertClose(t, fmt.Sprintf("rows, aggregate %v, grad %d", agg, i), rows[i], shifts[i], 1e-12)
			assertClose(t, fmt.Sprintf("unfold, aggregate %v, grad %d", agg, i), unfold[i], shifts[i], 1e-12)
		}
	}
}
