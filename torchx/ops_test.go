package torchx

import (
	"math"
	"math/rand"
	"testing"
)

func TestShapeOps(t *testing.T) {
	a := FromFloat64([]float64{1, 2, 3, 4, 5, 6}, 2, 3)
	b := FromFloat64([]float64{7, 8, 9}, 1, 3)
	c := Cat([]Tensor{a, b}, 0)
	assertShape(t, "cat", c, 3, 3)
	assertClose(t, "cat", Float64s(c), []float64{1, 2, 3, 4, 5, 6, 7, 8, 9}, 0)
	s := Stack([]Tensor{b, b}, 0)
	assertShape(t, "stack", s, 2, 1, 3)
	assertClose(t, "narrow", Float64s(Narrow(a, 1, 1, 2)), []float64{2, 3, 5, 6}, 0)
	assertClose(t, "slice", Float64s(Slice(a, 1, 0, 3, 2)), []float64{1, 3, 4, 6}, 0)
	r := Reshape(a, 3, -1)
	assertShape(t, "reshape", r, 3, 2)
	p := Permute(a, 1, 0)
	assertClose(t, "permute", Float64s(p), []float64{1, 4, 2, 5, 3, 6}, 0)
	assertShape(t, "unsqueeze", Unsqueeze(a, 0), 1, 2, 3)
	assertShape(t, "squeeze", Squeeze(Unsqueeze(a, 0), 0), 2, 3)
}

func TestPad(t *testing.T) {
	// One row [1 2 3] in a 1×1×1×3 image; pads (left 2, right 1, top 1, bottom 0).
	x := FromFloat64([]float64{1, 2, 3}, 1, 1, 1, 3)
	pads := []int64{2, 1, 1, 0}
	c := Pad(x, pads, PadConstant, -1)
	assertShape(t, "constant", c, 1, 1, 2, 6)
	assertClose(t, "constant", Float64s(c), []float64{-1, -1, -1, -1, -1, -1, -1, -1, 1, 2, 3, -1}, 0)
	rp := Pad(x, pads, PadReplicate, 0)
	assertClose(t, "replicate", Float64s(rp), []float64{1, 1, 1, 2, 3, 3, 1, 1, 1, 2, 3, 3}, 0)
	// Unbatched C×H×W input works as in PyTorch.
	assertShape(t, "unbatched", Pad(FromFloat64([]float64{1, 2, 3}, 1, 1, 3), []int64{1, 1, 1, 1}, PadReplicate, 0), 1, 3, 5)
	// 3D replicate on a 1×1×1×1×2 volume.
	v := Pad(FromFloat64([]float64{4, 5}, 1, 1, 1, 1, 2), []int64{0, 1, 0, 0, 1, 0}, PadReplicate, 0)
	assertClose(t, "replicate3d", Float64s(v), []float64{4, 5, 5, 4, 5, 5}, 0)
	gradCheck(t, "pad replicate", []float64{0.3, -1, 2, 0.5, 1.5, -0.2}, []int64{1, 1, 2, 3},
		func(x Tensor) Tensor { return Pad(x, []int64{2, 1, 1, 2}, PadReplicate, 0) })
}

func TestElementwiseAgainstMath(t *testing.T) {
	xs := []float64{0.25, 1, 2.5, 4}
	neg := []float64{-1.5, -0.5, 0, 0.5, 1.5}
	apply := func(v []float64, f func(float64) float64) []float64 {
		o := make([]float64, len(v))
		for i := range v {
			o[i] = f(v[i])
		}
		return o
	}
	cases := []struct {
		name string
		in   []float64
		op   func(Tensor) Tensor
		ref  func(float64) float64
	}{
		{"exp", neg, Exp, math.Exp},
		{"log", xs, Log, math.Log},
		{"sqrt", xs, Sqrt, math.Sqrt},
		{"rsqrt", xs, Rsqrt, func(v float64) float64 { return 1 / math.Sqrt(v) }},
		{"abs", neg, Abs, math.Abs},
		{"neg", neg, Neg, func(v float64) float64 { return -v }},
		{"pow3", neg, func(x Tensor) Tensor { return Pow(x, 3) }, func(v float64) float64 { return v * v * v }},
		{"pow0.5", xs, func(x Tensor) Tensor { return Pow(x, 0.5) }, math.Sqrt},
		{"clamp", neg, func(x Tensor) Tensor { return Clamp(x, -1, 0.25) }, func(v float64) float64 { return math.Max(-1, math.Min(0.25, v)) }},
		{"sigmoid", neg, Sigmoid, func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }},
		{"tanh", neg, Tanh, math.Tanh},
		{"relu", neg, Relu, func(v float64) float64 { return math.Max(v, 0) }},
		{"gelu", neg, Gelu, func(v float64) float64 { return 0.5 * v * (1 + math.Erf(v/math.Sqrt2)) }},
		{"leaky", neg, func(x Tensor) Tensor { return LeakyRelu(x, 0.1) }, func(v float64) float64 {
			if v < 0 {
				return 0.1 * v
			}
			return v
		}},
		{"addscalar", neg, func(x Tensor) Tensor { return AddScalar(x, 2) }, func(v float64) float64 { return v + 2 }},
		{"divscalar", neg, func(x Tensor) Tensor { return DivScalar(x, 4) }, func(v float64) float64 { return v / 4 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Float64s(c.op(FromFloat64(c.in, int64(len(c.in)))))
			assertClose(t, c.name, got, apply(c.in, c.ref), 1e-12)
		})
	}
	// Gradients of the smooth ones against finite differences.
	for _, c := range cases {
		switch c.name {
		case "exp", "log", "sqrt", "pow3", "sigmoid", "tanh", "gelu":
			in := c.in
			if c.name == "pow3" || c.name == "exp" || c.name == "sigmoid" || c.name == "tanh" || c.name == "gelu" {
				in = []float64{-1.3, -0.4, 0.2, 0.9}
			}
			gradCheck(t, c.name, in, []int64{int64(len(in))}, c.op)
		}
	}
}

func TestBinaryAndWhere(t *testing.T) {
	a := FromFloat64([]float64{1, 5, 3}, 3)
	b := FromFloat64([]float64{2, 4, 3}, 3)
	assertClose(t, "add", Float64s(Add(a, b)), []float64{3, 9, 6}, 0)
	assertClose(t, "sub", Float64s(Sub(a, b)), []float64{-1, 1, 0}, 0)
	assertClose(t, "mul", Float64s(Mul(a, b)), []float64{2, 20, 9}, 0)
	assertClose(t, "div", Float64s(Div(a, b)), []float64{0.5, 1.25, 1}, 0)
	assertClose(t, "max", Float64s(Maximum(a, b)), []float64{2, 5, 3}, 0)
	assertClose(t, "min", Float64s(Minimum(a, b)), []float64{1, 4, 3}, 0)
	assertClose(t, "eq", Float64s(Eq(a, b)), []float64{0, 0, 1}, 0)
	assertClose(t, "gt", Float64s(Gt(a, b)), []float64{0, 1, 0}, 0)
	assertClose(t, "where", Float64s(Where(Gt(a, b), a, b)), []float64{2, 5, 3}, 0)
	// broadcasting: (2,1) + (3) → (2,3)
	c := Add(FromFloat64([]float64{10, 20}, 2, 1), a)
	assertClose(t, "broadcast", Float64s(c), []float64{11, 15, 13, 21, 25, 23}, 0)
}

func TestReductions(t *testing.T) {
	// 2×3: [[1 2 3] [4 -5 6]]
	v := []float64{1, 2, 3, 4, -5, 6}
	x := FromFloat64(v, 2, 3)
	assertClose(t, "sum all", Float64s(Sum(x, false)), []float64{11}, 0)
	assertClose(t, "sum dim1", Float64s(Sum(x, false, 1)), []float64{6, 5}, 0)
	assertShape(t, "sum keepdim", Sum(x, true, 1), 2, 1)
	assertClose(t, "mean dim0", Float64s(Mean(x, false, 0)), []float64{2.5, -1.5, 4.5}, 0)
	assertClose(t, "amax", Float64s(Amax(x, false, 1)), []float64{3, 6}, 0)
	assertClose(t, "amin", Float64s(Amin(x, false)), []float64{-5}, 0)
	vals, idx := MaxDim(x, 0, false)
	assertClose(t, "max values", Float64s(vals), []float64{4, 2, 6}, 0)
	if got := Int64s(idx); got[0] != 1 || got[1] != 0 || got[2] != 1 {
		t.Fatalf("max indices %v", got)
	}
	if got := Int64s(Argmax(x, 1, false)); got[0] != 2 || got[1] != 2 {
		t.Fatalf("argmax %v", got)
	}
	// softmax / log_softmax over dim 1, computed here
	sm := Float64s(Softmax(x, 1))
	lsm := Float64s(LogSoftmax(x, 1))
	want := make([]float64, 6)
	wantLog := make([]float64, 6)
	for r := 0; r < 2; r++ {
		var z float64
		for c := 0; c < 3; c++ {
			z += math.Exp(v[r*3+c])
		}
		for c := 0; c < 3; c++ {
			want[r*3+c] = math.Exp(v[r*3+c]) / z
			wantLog[r*3+c] = v[r*3+c] - math.Log(z)
		}
	}
	assertClose(t, "softmax", sm, want, 1e-12)
	assertClose(t, "log_softmax", lsm, wantLog, 1e-12)
	gradCheck(t, "softmax", v, []int64{2, 3}, func(x Tensor) Tensor { return Softmax(x, 1) })
	gradCheck(t, "mean", v, []int64{2, 3}, func(x Tensor) Tensor { return Mean(x, true, 0) })
}

func TestMatmulBmm(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	const B, n, m, p = 2, 3, 4, 5
	a := randVals(r, B*n*m)
	b := randVals(r, B*m*p)
	want := make([]float64, B*n*p)
	for bb := 0; bb < B; bb++ {
		for i := 0; i < n; i++ {
			for j := 0; j < p; j++ {
				var s float64
				for k := 0; k < m; k++ {
					s += a[bb*n*m+i*m+k] * b[bb*m*p+k*p+j]
				}
				want[bb*n*p+i*p+j] = s
			}
		}
	}
	at, bt := FromFloat64(a, B, n, m), FromFloat64(b, B, m, p)
	assertClose(t, "bmm", Float64s(Bmm(at, bt)), want, 1e-12)
	assertClose(t, "matmul", Float64s(Matmul(at, bt)), want, 1e-12)
	gradCheck(t, "matmul", a, []int64{B, n, m}, func(x Tensor) Tensor { return Matmul(x, bt) })
}

func TestRemainingElementwiseAndCopies(t *testing.T) {
	x := FromFloat64([]float64{-1.5, -0.5, 0, 0.5, 2.5}, 5)
	assertClose(t, "sign", Float64s(Sign(x)), []float64{-1, -1, 0, 1, 1}, 0)
	assertClose(t, "floor", Float64s(Floor(x)), []float64{-2, -1, 0, 0, 2}, 0)
	assertClose(t, "round (half to even)", Float64s(Round(x)), []float64{-2, -0, 0, 0, 2}, 0)
	assertClose(t, "clamp_min", Float64s(ClampMin(x, 0)), []float64{0, 0, 0, 0.5, 2.5}, 0)
	assertClose(t, "eq scalar", Float64s(EqScalar(x, 0.5)), []float64{0, 0, 0, 1, 0}, 0)
	assertClose(t, "gt scalar", Float64s(GtScalar(x, 0)), []float64{0, 0, 0, 1, 1}, 0)
	assertClose(t, "lt", Float64s(Lt(x, Zeros([]int64{5}, Float64, "cpu"))), []float64{1, 1, 0, 0, 0}, 0)
	// Clone owns new memory; Detach and Contiguous keep values; Full fills.
	c := Clone(x)
	CopyInto(c, Zeros([]int64{5}, Float64, "cpu"))
	if Float64s(x)[0] != -1.5 || Float64s(c)[0] != 0 {
		t.Fatal("clone shares memory")
	}
	assertClose(t, "contiguous of a transpose", Float64s(Contiguous(Permute(FromFloat64([]float64{1, 2, 3, 4, 5, 6}, 2, 3), 1, 0))), []float64{1, 4, 2, 5, 3, 6}, 0)
	assertClose(t, "full", Float64s(Full([]int64{2}, 7.5, Float64, "cpu")), []float64{7.5, 7.5}, 0)
	ManualSeed(3)
	for _, v := range Float64s(Rand([]int64{1000}, Float64, "cpu")) {
		if v < 0 || v >= 1 {
			t.Fatalf("rand value %g outside [0,1)", v)
		}
	}
	if DTypeOf(To(x, "", Float32)) != Float32 || DTypeOf(FromUint8([]uint8{1}, 1)) != Uint8 {
		t.Fatal("dtype conversion")
	}
}

func TestFlip(t *testing.T) {
	// 2×3 with values 10·i + j: flipping dim 1 maps (i, j) to (i, 2−j); both dims to (1−i, 2−j).
	x := FromFloat64([]float64{0, 1, 2, 10, 11, 12}, 2, 3)
	assertClose(t, "flip 1", Float64s(Flip(x, 1)), []float64{2, 1, 0, 12, 11, 10}, 0)
	assertClose(t, "flip 0,1", Float64s(Flip(x, 0, 1)), []float64{12, 11, 10, 2, 1, 0}, 0)
	if err := Try(func() { Flip(x, 5) }); err == nil {
		t.Fatal("flip of a missing dim: no error")
	}
}

// A counter and a trained parameter both take the in-place add outside autograd.
func TestAddScalarInPlace(t *testing.T) {
	n := Zeros(nil, Int64, "cpu")
	for i := 0; i < 3; i++ {
		AddScalarInPlace(n, 1)
	}
	if v := Item(n); v != 3 {
		t.Fatalf("counter %v after three adds, want 3", v)
	}
	p := FromFloat32([]float32{1, 2}, 2)
	SetRequiresGrad(p, true)
	AddScalarInPlace(p, 0.5)
	assertClose(t, "parameter", Float64s(p), []float64{1.5, 2.5}, 0)
	if !RequiresGrad(p) {
		t.Fatal("the parameter lost requires_grad")
	}
}
