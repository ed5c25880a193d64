package models

import (
	"math"

	"github.com/sli2vol/sli2vol/torchx"
)

// GEIG is the gradient-enhanced image generator of Sli2Vol+ (§3.3): per pixel, the
// second-order differences I(p+r·u) + I(p−r·u) − 2·I(p) along d directions u and s scales r,
// softmax-normalised across the d·s values, followed by the intensity itself:
// B×1×H×W → B×(d·s+1)×H×W. Channel i·s+j holds direction i at scale j; the last is I.
type GEIG struct {
	Directions int
	Scales     []int
	filter     *fixedFilter
}

// GEIGOffsets gives direction i's unit step: angle θ = i·180°/d, scaled so the larger
// component is 1 (so d = 4 gives (0,1), (−1,1), (−1,0), (−1,−1) in (dy, dx): 0°, 45°, 90°,
// 135° with rows growing downwards); at scale r the offset is the rounded r·step.
func GEIGOffsets(directions int, r int) [][2]int {
	out := make([][2]int, directions)
	for i := range out {
		th := float64(i) * math.Pi / float64(directions)
		uy, ux := -math.Sin(th), math.Cos(th)
		m := math.Max(math.Abs(uy), math.Abs(ux))
		out[i] = [2]int{int(math.Round(float64(r) * uy / m)), int(math.Round(float64(r) * ux / m))}
	}
	return out
}

// NewGEIG builds the generator for d directions at the given scales.
func NewGEIG(directions int, scales []int) *GEIG {
	var chans [][]tap
	for i := 0; i < directions; i++ {
		for _, r := range scales {
			o := GEIGOffsets(directions, r)[i]
			chans = append(chans, []tap{{o[0], o[1], 1}, {-o[0], -o[1], 1}, {0, 0, -2}})
		}
	}
	return &GEIG{Directions: directions, Scales: append([]int(nil), scales...), filter: newFixedFilter(chans)}
}

// Channels is d·s+1.
func (g *GEIG) Channels() int { return g.Directions*len(g.Scales) + 1 }

// FilterKernel is the fixed stencil as one convolution kernel, (d·s)×1×S×S on the CPU, and
// its reach (S = 2·reach+1; the input is padded by reach, replicating its border).
func (g *GEIG) FilterKernel() (Tensor, int) { return g.filter.kernel("cpu"), g.filter.reach }

// SecondDerivatives is the pre-softmax response, B×(d·s)×H×W (replicate padding).
func (g *GEIG) SecondDerivatives(x Tensor) Tensor { return g.filter.apply(x) }

// Forward returns the gradient-enhanced image.
func (g *GEIG) Forward(x Tensor) Tensor {
	return torchx.Cat([]Tensor{torchx.Softmax(g.SecondDerivatives(x), 1), x}, 1)
}

// EdgeProfile is Sli2Vol's information bottleneck: the first-order differences I(p) − I(p+v)
// to the other pixels v of a (2r+1)² window (48 for r = 3), softmax-normalised across them,
// with replicate padding. B×1×H×W → B×((2r+1)²−1)×H×W, offsets in row-major window order.
type EdgeProfile struct {
	Radius int
	filter *fixedFilter
}

// NewEdgeProfile builds the profile for a (2r+1)² window.
func NewEdgeProfile(radius int) *EdgeProfile {
	var chans [][]tap
	for dy := -radius; dy <= radius; dy++ {
		for dx := -radius; dx <= radius; dx++ {
			if dy == 0 && dx == 0 {
				continue
			}
			chans = append(chans, []tap{{0, 0, 1}, {dy, dx, -1}})
		}
	}
	return &EdgeProfile{Radius: radius, filter: newFixedFilter(chans)}
}

// Channels is (2r+1)²−1.
func (e *EdgeProfile) Channels() int { return (2*e.Radius+1)*(2*e.Radius+1) - 1 }

// FilterKernel is the fixed stencil as one convolution kernel, ((2r+1)²−1)×1×S×S on the
// CPU, and its reach.
func (e *EdgeProfile) FilterKernel() (Tensor, int) { return e.filter.kernel("cpu"), e.filter.reach }

// Differences is the pre-softmax profile.
func (e *EdgeProfile) Differences(x Tensor) Tensor { return e.filter.apply(x) }

// Forward returns the softmax-normalised profile.
func (e *EdgeProfile) Forward(x Tensor) Tensor { return torchx.Softmax(e.Differences(x), 1) }
