package torchx

import (
	"math"
	"math/rand"
	"testing"
)

func TestConv2dAgainstNaive(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	cases := []struct {
		name             string
		xs, ws           [4]int
		stride, pad, dil [2]int
		groups           int
		bias             bool
	}{
		{"plain", [4]int{2, 3, 7, 6}, [4]int{4, 3, 3, 3}, [2]int{1, 1}, [2]int{0, 0}, [2]int{1, 1}, 1, true},
		{"stride-pad", [4]int{1, 2, 8, 9}, [4]int{3, 2, 3, 2}, [2]int{2, 3}, [2]int{1, 2}, [2]int{1, 1}, 1, false},
		{"dilation", [4]int{1, 2, 9, 9}, [4]int{2, 2, 3, 3}, [2]int{1, 1}, [2]int{2, 2}, [2]int{2, 3}, 1, true},
		{"groups", [4]int{1, 4, 5, 5}, [4]int{6, 2, 3, 3}, [2]int{1, 1}, [2]int{1, 1}, [2]int{1, 1}, 2, true},
		{"7x7 stem", [4]int{1, 1, 9, 9}, [4]int{2, 1, 7, 7}, [2]int{1, 1}, [2]int{3, 3}, [2]int{1, 1}, 1, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := randVals(r, c.xs[0]*c.xs[1]*c.xs[2]*c.xs[3])
			w := randVals(r, c.ws[0]*c.ws[1]*c.ws[2]*c.ws[3])
			var b []float64
			bt := Tensor{}
			if c.bias {
				b = randVals(r, c.ws[0])
				bt = FromFloat64(b, int64(c.ws[0]))
			}
			want, os := naiveConv2d(x, c.xs, w, c.ws, b, c.stride, c.pad, c.dil, c.groups)
			o := ConvOpts{
				Stride:   []int64{int64(c.stride[0]), int64(c.stride[1])},
				Padding:  []int64{int64(c.pad[0]), int64(c.pad[1])},
				Dilation: []int64{int64(c.dil[0]), int64(c.dil[1])},
				Groups:   int64(c.groups),
			}
			xt := FromFloat64(x, int64(c.xs[0]), int64(c.xs[1]), int64(c.xs[2]), int64(c.xs[3]))
			wt := FromFloat64(w, int64(c.ws[0]), int64(c.ws[1]), int64(c.ws[2]), int64(c.ws[3]))
			y := Conv2d(xt, wt, bt, o)
			assertShape(t, "conv2d", y, int64(os[0]), int64(os[1]), int64(os[2]), int64(os[3]))
			assertClose(t, "conv2d", Float64s(y), want, 1e-10)
			if c.name == "stride-pad" || c.name == "groups" {
				gradCheck(t, "conv2d input", x, []int64{int64(c.xs[0]), int64(c.xs[1]), int64(c.xs[2]), int64(c.xs[3])},
					func(x Tensor) Tensor { return Conv2d(x, wt, bt, o) })
				gradCheck(t, "conv2d weight", w, []int64{int64(c.ws[0]), int64(c.ws[1]), int64(c.ws[2]), int64(c.ws[3])},
					func(w Tensor) Tensor { return Conv2d(xt, w, bt, o) })
			}
		})
	}
}

func TestConv3dAgainstNaive(t *testing.T) {
	r := rand.New(rand.NewSource(4))
	const n, ci, co, d, hh, ww, k = 1, 2, 3, 4, 5, 4, 3
	x := randVals(r, n*ci*d*hh*ww)
	w := randVals(r, co*ci*k*k*k)
	b := randVals(r, co)
	// stride 1, padding 1: output same size
	want := make([]float64, n*co*d*hh*ww)
	for o := 0; o < co; o++ {
		for z := 0; z < d; z++ {
			for y := 0; y < hh; y++ {
				for xx := 0; xx < ww; xx++ {
					s := b[o]
					for c := 0; c < ci; c++ {
						for kz := 0; kz < k; kz++ {
							for ky := 0; ky < k; ky++ {
								for kx := 0; kx < k; kx++ {
									iz, iy, ix := z+kz-1, y+ky-1, xx+kx-1
									if iz < 0 || iz >= d || iy < 0 || iy >= hh || ix < 0 || ix >= ww {
										continue
									}
									s += x[((c*d+iz)*hh+iy)*ww+ix] * w[(((o*ci+c)*k+kz)*k+ky)*k+kx]
								}
							}
						}
					}
					want[((o*d+z)*hh+y)*ww+xx] = s
				}
			}
		}
	}
	y := Conv3d(FromFloat64(x, n, ci, d, hh, ww), FromFloat64(w, co, ci, k, k, k), FromFloat64(b, co), ConvOpts{Padding: []int64{1}})
	assertClose(t, "conv3d", Float64s(y), want, 1e-10)
}

// dot is Σ a·b over all elements.
func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// A transposed convolution is the adjoint of the convolution with the same weight:
// <convT(y), x> = <y, conv(x)>. That identity checks 2D and 3D with stride, padding,
// dilation, groups and output padding without trusting any other implementation.
func TestConvTransposeIsAdjoint(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	cases := []struct {
		name  string
		x, w  []int64 // conv input N×Cin×spatial, weight Cout×Cin/g×k
		o     ConvOpts
		three bool
	}{
		{"2d", []int64{1, 4, 7, 6}, []int64{6, 2, 3, 3}, ConvOpts{Stride: []int64{2}, Padding: []int64{1}, Groups: 2}, false},
		{"2d-dil", []int64{2, 3, 9, 8}, []int64{2, 3, 3, 2}, ConvOpts{Stride: []int64{1, 2}, Padding: []int64{2, 1}, Dilation: []int64{2, 1}}, false},
		{"3d", []int64{1, 2, 6, 5, 6}, []int64{3, 2, 2, 2, 2}, ConvOpts{Stride: []int64{2}}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := randVals(r, int(numel(c.x)))
			w := randVals(r, int(numel(c.w)))
			xt, wt := FromFloat64(x, c.x...), FromFloat64(w, c.w...)
			var y Tensor
			if c.three {
				y = Conv3d(xt, wt, Tensor{}, c.o)
			} else {
				y = Conv2d(xt, wt, Tensor{}, c.o)
			}
			g := randVals(r, int(Numel(y)))
			gt := FromFloat64(g, y.Shape()...)
			// Output padding makes convT's output match x's size where the stride dropped a
			// remainder.
			o := c.o
			sp := len(c.x) - 2
			o.OutputPadding = make([]int64, sp)
			for i := 0; i < sp; i++ {
				s := spatial("stride", c.o.Stride, sp, 1)[i]
				p := spatial("padding", c.o.Padding, sp, 0)[i]
				dl := spatial("dilation", c.o.Dilation, sp, 1)[i]
				full := (y.Shape()[2+i]-1)*s - 2*p + dl*(c.w[2+i]-1) + 1
				o.OutputPadding[i] = c.x[2+i] - full
			}
			var xt2 Tensor
			if c.three {
				xt2 = ConvTranspose3d(gt, wt, Tensor{}, o)
			} else {
				xt2 = ConvTranspose2d(gt, wt, Tensor{}, o)
			}
			assertShape(t, "convT", xt2, c.x...)
			lhs, rhs := dot(Float64s(xt2), x), dot(g, Float64s(y))
			if math.Abs(lhs-rhs) > 1e-9*(1+math.Abs(rhs)) {
				t.Fatalf("<convT(g),x> = %.12g, <g,conv(x)> = %.12g", lhs, rhs)
			}
		})
	}
	// Bias of a transposed conv is added per output channel.
	y := ConvTranspose2d(Zeros([]int64{1, 2, 2, 2}, Float64, "cpu"), Zeros([]int64{2, 3, 1, 1}, Float64, "cpu"),
		FromFloat64([]float64{1, 2, 3}, 3), ConvOpts{})
	assertClose(t, "convT bias", Float64s(Mean(y, false, 0, 2, 3)), []float64{1, 2, 3}, 0)
}

// The norms' test input: N×C×H×W values x, per-channel affine w and b.
const normN, normC, normH, normW = 3, 4, 2, 3

type normInput struct {
	x, w, b    []float64
	xt, wt, bt Tensor
}

// stats is the mean and biased variance of the x selected by sel, and their count.
func (in *normInput) stats(sel func(n, c, i int) bool) (mean, varb float64, cnt int) {
	const N, C, H, W = normN, normC, normH, normW
	for n := 0; n < N; n++ {
		for c := 0; c < C; c++ {
			for i := 0; i < H*W; i++ {
				if sel(n, c, i) {
					mean += in.x[(n*C+c)*H*W+i]
					cnt++
				}
			}
		}
	}
	mean /= float64(cnt)
	for n := 0; n < N; n++ {
		for c := 0; c < C; c++ {
			for i := 0; i < H*W; i++ {
				if sel(n, c, i) {
					d := in.x[(n*C+c)*H*W+i] - mean
					varb += d * d
				}
			}
		}
	}
	return mean, varb / float64(cnt), cnt
}

func TestNorms(t *testing.T) {
	const N, C, H, W = normN, normC, normH, normW
	r := rand.New(rand.NewSource(6))
	in := &normInput{x: randVals(r, N*C*H*W), w: randVals(r, C), b: randVals(r, C)}
	in.xt = FromFloat64(in.x, N, C, H, W)
	in.wt, in.bt = FromFloat64(in.w, C), FromFloat64(in.b, C)
	const eps = 1e-5
	checkBatchNorm(t, in, eps)
	checkInstanceGroupNorm(t, in, eps)
	checkLayerNorm(t, in, eps)
	gradCheck(t, "group norm", in.x[:2*C*H*W], []int64{2, C, H, W}, func(x Tensor) Tensor { return GroupNorm(x, 2, in.wt, in.bt, eps) })
}

func checkBatchNorm(t *testing.T, in *normInput, eps float64) {
	t.Helper()
	const N, C, H, W = normN, normC, normH, normW
	x, w, b, xs := in.x, in.w, in.b, [4]int{N, C, H, W}
	// Batch norm, training: batch statistics; running stats updated with the unbiased variance.
	rm := Zeros([]int64{C}, Float64, "cpu")
	rv := Full([]int64{C}, 1, Float64, "cpu")
	y := Float64s(BatchNorm(in.xt, in.wt, in.bt, rm, rv, true, 0.1, eps))
	want := make([]float64, len(x))
	wantRM, wantRV := make([]float64, C), make([]float64, C)
	for c := 0; c < C; c++ {
		m, v, cnt := in.stats(func(_, cc, _ int) bool { return cc == c })
		for n := 0; n < N; n++ {
			for i := 0; i < H*W; i++ {
				k := idx4(xs, n, c, 0, 0) + i
				want[k] = (x[k]-m)/math.Sqrt(v+eps)*w[c] + b[c]
			}
		}
		wantRM[c] = 0.1 * m
		wantRV[c] = 0.9 + 0.1*v*float64(cnt)/float64(cnt-1)
	}
	assertClose(t, "batch norm", y, want, 1e-10)
	assertClose(t, "running mean", Float64s(rm), wantRM, 1e-12)
	assertClose(t, "running var", Float64s(rv), wantRV, 1e-12)
	// Batch norm, eval: uses the running statistics.
	ye := Float64s(BatchNorm(in.xt, in.wt, in.bt, rm, rv, false, 0.1, eps))
	for c := 0; c < C; c++ {
		k := idx4(xs, 1, c, 1, 2)
		wk := (x[k]-wantRM[c])/math.Sqrt(wantRV[c]+eps)*w[c] + b[c]
		if math.Abs(ye[k]-wk) > 1e-10 {
			t.Fatalf("eval batch norm %g want %g", ye[k], wk)
		}
	}
}

func checkInstanceGroupNorm(t *testing.T, in *normInput, eps float64) {
	t.Helper()
	const N, C, H, W = normN, normC, normH, normW
	x, w, b, xs := in.x, in.w, in.b, [4]int{N, C, H, W}
	want := make([]float64, len(x))
	// Instance norm: per sample and channel.
	yi := Float64s(InstanceNorm(in.xt, in.wt, in.bt, eps))
	for n := 0; n < N; n++ {
		for c := 0; c < C; c++ {
			m, v, _ := in.stats(func(nn, cc, _ int) bool { return nn == n && cc == c })
			for i := 0; i < H*W; i++ {
				k := idx4(xs, n, c, 0, 0) + i
				want[k] = (x[k]-m)/math.Sqrt(v+eps)*w[c] + b[c]
			}
		}
	}
	assertClose(t, "instance norm", yi, want, 1e-10)

	// Group norm with 2 groups of 2 channels.
	yg := Float64s(GroupNorm(in.xt, 2, in.wt, in.bt, eps))
	for n := 0; n < N; n++ {
		for g := 0; g < 2; g++ {
			m, v, _ := in.stats(func(nn, cc, _ int) bool { return nn == n && cc/2 == g })
			for c := 2 * g; c < 2*g+2; c++ {
				for i := 0; i < H*W; i++ {
					k := idx4(xs, n, c, 0, 0) + i
					want[k] = (x[k]-m)/math.Sqrt(v+eps)*w[c] + b[c]
				}
			}
		}
	}
	assertClose(t, "group norm", yg, want, 1e-10)
}

// checkLayerNorm: layer norm over the last dim (W), no affine.
func checkLayerNorm(t *testing.T, in *normInput, eps float64) {
	t.Helper()
	const N, C, H, W = normN, normC, normH, normW
	x := in.x
	want := make([]float64, len(x))
	yl := Float64s(LayerNorm(in.xt, []int64{W}, Tensor{}, Tensor{}, eps))
	for row := 0; row < N*C*H; row++ {
		var m, v float64
		for i := 0; i < W; i++ {
			m += x[row*W+i]
		}
		m /= W
		for i := 0; i < W; i++ {
			v += (x[row*W+i] - m) * (x[row*W+i] - m)
		}
		v /= W
		for i := 0; i < W; i++ {
			want[row*W+i] = (x[row*W+i] - m) / math.Sqrt(v+eps)
		}
	}
	assertClose(t, "layer norm", yl, want[:len(yl)], 1e-10)
}

func TestInterpolate(t *testing.T) {
	// nearest 2×2 → 4×4 repeats each value in a 2×2 block
	n := Float64s(Interpolate(FromFloat64([]float64{1, 2, 3, 4}, 1, 1, 2, 2), []int64{4, 4}, Nearest, false))
	assertClose(t, "nearest", n, []float64{1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4}, 0)
	// bilinear, half-pixel centres: [0 1] → 4: source x = (i+0.5)/2-0.5 clamped to [0,1]
	b := Float64s(Interpolate(FromFloat64([]float64{0, 1}, 1, 1, 1, 2), []int64{1, 4}, Bilinear, false))
	assertClose(t, "bilinear", b, []float64{0, 0.25, 0.75, 1}, 1e-12)
	// bilinear and trilinear with aligned corners reproduce a linear function exactly.
	lin := func(x, y, z float64) float64 { return 1 + x + 2*y + 3*z }
	const h0, w0, h1, w1 = 3, 4, 5, 7
	src := make([]float64, h0*w0)
	for y := 0; y < h0; y++ {
		for x := 0; x < w0; x++ {
			src[y*w0+x] = lin(float64(x)/(w0-1), float64(y)/(h0-1), 0)
		}
	}
	got := Float64s(Interpolate(FromFloat64(src, 1, 1, h0, w0), []int64{h1, w1}, Bilinear, true))
	want := make([]float64, h1*w1)
	for y := 0; y < h1; y++ {
		for x := 0; x < w1; x++ {
			want[y*w1+x] = lin(float64(x)/(w1-1), float64(y)/(h1-1), 0)
		}
	}
	assertClose(t, "bilinear linear", got, want, 1e-12)
	const d0, d1 = 2, 3
	src3 := make([]float64, d0*h0*w0)
	for z := 0; z < d0; z++ {
		for y := 0; y < h0; y++ {
			for x := 0; x < w0; x++ {
				src3[(z*h0+y)*w0+x] = lin(float64(x)/(w0-1), float64(y)/(h0-1), float64(z)/(d0-1))
			}
		}
	}
	got3 := Float64s(Interpolate(FromFloat64(src3, 1, 1, d0, h0, w0), []int64{d1, h1, w1}, Trilinear, true))
	want3 := make([]float64, d1*h1*w1)
	for z := 0; z < d1; z++ {
		for y := 0; y < h1; y++ {
			for x := 0; x < w1; x++ {
				want3[(z*h1+y)*w1+x] = lin(float64(x)/(w1-1), float64(y)/(h1-1), float64(z)/(d1-1))
			}
		}
	}
	assertClose(t, "trilinear linear", got3, want3, 1e-12)
	// nearest 3D on a label volume keeps labels integral
	lab := Float64s(Interpolate(FromFloat64([]float64{0, 7}, 1, 1, 1, 1, 2), []int64{1, 1, 4}, Nearest, false))
	assertClose(t, "nearest3d", lab, []float64{0, 0, 7, 7}, 0)
	gradCheck(t, "bilinear", src, []int64{1, 1, h0, w0}, func(x Tensor) Tensor { return Interpolate(x, []int64{h1, w1}, Bilinear, false) })
}

func TestUnfold2d(t *testing.T) {
	r := rand.New(rand.NewSource(8))
	const N, C, H, W = 1, 2, 5, 4
	x := randVals(r, N*C*H*W)
	k, d, p, s := [2]int64{3, 2}, [2]int64{1, 2}, [2]int64{1, 1}, [2]int64{2, 1}
	got := Unfold2d(FromFloat64(x, N, C, H, W), k, d, p, s)
	oh := (H+2*int(p[0])-int(d[0])*(int(k[0])-1)-1)/int(s[0]) + 1
	ow := (W+2*int(p[1])-int(d[1])*(int(k[1])-1)-1)/int(s[1]) + 1
	assertShape(t, "unfold", got, N, int64(C)*k[0]*k[1], int64(oh*ow))
	want := make([]float64, C*int(k[0]*k[1])*oh*ow)
	L := oh * ow
	for c := 0; c < C; c++ {
		for ky := 0; ky < int(k[0]); ky++ {
			for kx := 0; kx < int(k[1]); kx++ {
				row := (c*int(k[0])+ky)*int(k[1]) + kx
				for oy := 0; oy < oh; oy++ {
					for ox := 0; ox < ow; ox++ {
						iy := oy*int(s[0]) - int(p[0]) + ky*int(d[0])
						ix := ox*int(s[1]) - int(p[1]) + kx*int(d[1])
						v := 0.0
						if iy >= 0 && iy < H && ix >= 0 && ix < W {
							v = x[(c*H+iy)*W+ix]
						}
						want[row*L+oy*ow+ox] = v
					}
				}
			}
		}
	}
	assertClose(t, "unfold", Float64s(got), want, 0)
}

func TestOneHotDropout(t *testing.T) {
	oh := OneHot(FromInt64([]int64{0, 2, 1}, 3), 3)
	assertShape(t, "one_hot", oh, 3, 3)
	if got := Int64s(oh); got[0] != 1 || got[5] != 1 || got[7] != 1 || got[1] != 0 {
		t.Fatalf("one_hot %v", got)
	}
	ones := Full([]int64{10000}, 1, Float32, "cpu")
	assertClose(t, "dropout eval", Float64s(Dropout(ones, 0.5, false))[:3], []float64{1, 1, 1}, 0)
	ManualSeed(1)
	v := Float64s(Dropout(ones, 0.5, true))
	zeros := 0
	for _, e := range v {
		switch e {
		case 0:
			zeros++
		case 2:
		default:
			t.Fatalf("dropout value %g, want 0 or 1/(1-p)=2", e)
		}
	}
	// Binomial(10000, 0.5): 5 standard deviations is ±250.
	if zeros < 4750 || zeros > 5250 {
		t.Fatalf("dropout zeroed %d of 10000 at p=0.5", zeros)
	}
}

func TestLosses(t *testing.T) {
	a := []float64{0.5, -1, 2, 0.2}
	b := []float64{0, 1, 0.5, 0.1}
	at, bt := FromFloat64(a, 4), FromFloat64(b, 4)
	var l1, mse, sl1 float64
	for i := range a {
		d := a[i] - b[i]
		l1 += math.Abs(d)
		mse += d * d
		if math.Abs(d) < 1 {
			sl1 += 0.5 * d * d
		} else {
			sl1 += math.Abs(d) - 0.5
		}
	}
	assertClose(t, "l1 mean", Float64s(L1Loss(at, bt, ReduceMean)), []float64{l1 / 4}, 1e-12)
	assertClose(t, "mse sum", Float64s(MSELoss(at, bt, ReduceSum)), []float64{mse}, 1e-12)
	assertClose(t, "smooth l1", Float64s(SmoothL1Loss(at, bt, ReduceMean, 1)), []float64{sl1 / 4}, 1e-12)
	assertShape(t, "l1 none", L1Loss(at, bt, ReduceNone), 4)
	gradCheck(t, "smooth l1", a, []int64{4}, func(x Tensor) Tensor { return SmoothL1Loss(x, bt, ReduceSum, 1) })

	// Cross-entropy: 3 samples, 3 classes, class weights, one ignored target.
	logits := []float64{1, 2, 0.5, -1, 0, 3, 0.2, 0.2, 0.1}
	target := []int64{1, 2, -100}
	weight := []float64{0.5, 2, 1}
	var num, den float64
	for n := 0; n < 2; n++ {
		row := logits[n*3 : n*3+3]
		z := math.Log(math.Exp(row[0]) + math.Exp(row[1]) + math.Exp(row[2]))
		c := target[n]
		num += weight[c] * (z - row[c])
		den += weight[c]
	}
	ce := CrossEntropy(FromFloat64(logits, 3, 3), FromInt64(target, 3), FromFloat64(weight, 3), ReduceMean, -100, 0)
	assertClose(t, "cross entropy", Float64s(ce), []float64{num / den}, 1e-12)
	// Label smoothing ε: (1−ε)·NLL + ε·mean over classes of −log p.
	const eps = 0.1
	var ls float64
	for n := 0; n < 2; n++ {
		row := logits[n*3 : n*3+3]
		z := math.Log(math.Exp(row[0]) + math.Exp(row[1]) + math.Exp(row[2]))
		var all float64
		for c := 0; c < 3; c++ {
			all += z - row[c]
		}
		ls += (1-eps)*(z-row[target[n]]) + eps*all/3
	}
	ces := CrossEntropy(FromFloat64(logits[:6], 2, 3), FromInt64(target[:2], 2), Tensor{}, ReduceMean, -100, eps)
	assertClose(t, "cross entropy smoothing", Float64s(ces), []float64{ls / 2}, 1e-12)
}
