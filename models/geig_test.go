package models

import (
	"math"
	"testing"

	"github.com/sli2vol/sli2vol/torchx"
)

// On I(x,y) = a·x² + b·y², the second difference along offset (oy, ox) is exactly
// 2a·ox² + 2b·oy² at every pixel whose stencil stays inside the image.
func TestGEIGClosedForm(t *testing.T) {
	const H, W, a, b = 20, 22, 0.3, -0.7
	img := make([]float32, H*W)
	for y := 0; y < H; y++ {
		for x := 0; x < W; x++ {
			img[y*W+x] = float32(a*float64(x*x) + b*float64(y*y))
		}
	}
	for _, c := range []struct {
		d      int
		scales []int
	}{{4, []int{1, 2, 3}}, {2, []int{1, 4}}, {8, []int{2}}} {
		g := NewGEIG(c.d, c.scales)
		if g.Channels() != c.d*len(c.scales)+1 {
			t.Fatalf("channels %d", g.Channels())
		}
		x := torchx.FromFloat32(img, 1, 1, H, W)
		raw := torchx.Float32s(g.SecondDerivatives(x))
		reach := 0
		for _, r := range c.scales {
			for _, o := range GEIGOffsets(c.d, r) {
				reach = max(reach, abs(o[0]), abs(o[1]))
			}
		}
		for i := 0; i < c.d; i++ {
			for j, r := range c.scales {
				o := GEIGOffsets(c.d, r)[i]
				want := 2*a*float64(o[1]*o[1]) + 2*b*float64(o[0]*o[0])
				ch := i*len(c.scales) + j
				for y := reach; y < H-reach; y++ {
					for xx := reach; xx < W-reach; xx++ {
						got := float64(raw[(ch*H+y)*W+xx])
						if math.Abs(got-want) > 1e-3 {
							t.Fatalf("d=%d dir %d scale %d at (%d,%d): %g, want %g", c.d, i, r, y, xx, got, want)
						}
					}
				}
			}
		}
		// Full output: softmax over the d·s channels, then the intensity.
		out := g.Forward(x)
		sums := torchx.Float32s(torchx.Sum(torchx.Narrow(out, 1, 0, int64(c.d*len(c.scales))), false, 1))
		for _, s := range sums {
			if math.Abs(float64(s)-1) > 1e-5 {
				t.Fatalf("softmax channels sum to %g", s)
			}
		}
		last := torchx.Float32s(torchx.Narrow(out, 1, int64(c.d*len(c.scales)), 1))
		for i := range last {
			if last[i] != img[i] {
				t.Fatalf("intensity channel differs at %d", i)
			}
		}
	}
	// The paper's four directions at scale 1: 0°, 45°, 90°, 135°.
	want := [][2]int{{0, 1}, {-1, 1}, {-1, 0}, {-1, -1}}
	for i, o := range GEIGOffsets(4, 1) {
		if o != want[i] {
			t.Fatalf("direction %d offset %v, want %v", i, o, want[i])
		}
	}
}

// Replicate padding: a constant image has zero second derivatives everywhere, also at the
// border (zero padding would not).
func TestGEIGReplicateBorder(t *testing.T) {
	g := NewGEIG(4, []int{1, 2, 3})
	raw := torchx.Float32s(g.SecondDerivatives(torchx.Full([]int64{1, 1, 8, 8}, 5, torchx.Float32, "cpu")))
	for i, v := range raw {
		if v != 0 {
			t.Fatalf("constant image: response %g at %d", v, i)
		}
	}
}

// On a linear image αx + βy, I(p) − I(p+v) = −(α·vx + β·vy) inside; 48 channels for r = 3.
func TestEdgeProfileLinear(t *testing.T) {
	const H, W, al, be = 12, 13, 0.5, -0.25
	img := make([]float32, H*W)
	for y := 0; y < H; y++ {
		for x := 0; x < W; x++ {
			img[y*W+x] = float32(al*float64(x) + be*float64(y))
		}
	}
	e := NewEdgeProfile(3)
	if e.Channels() != 48 {
		t.Fatalf("channels %d", e.Channels())
	}
	raw := torchx.Float32s(e.Differences(torchx.FromFloat32(img, 1, 1, H, W)))
	ch := 0
	for dy := -3; dy <= 3; dy++ {
		for dx := -3; dx <= 3; dx++ {
			if dy == 0 && dx == 0 {
				continue
			}
			want := -(al*float64(dx) + be*float64(dy))
			for y := 3; y < H-3; y++ {
				for x := 3; x < W-3; x++ {
					if got := float64(raw[(ch*H+y)*W+x]); math.Abs(got-want) > 1e-5 {
						t.Fatalf("offset (%d,%d) at (%d,%d): %g want %g", dy, dx, y, x, got, want)
					}
				}
			}
			ch++
		}
	}
}
