package models

import (
	"fmt"
	"sync"

	"github.com/sli2vol/sli2vol/torchx"
)

// tap is one term of a fixed linear filter: coef · I(p + (dy, dx)).
type tap struct {
	dy, dx int
	coef   float32
}

// fixedFilter applies several fixed stencils to a one-channel image as a single convolution
// with replicate padding: every output channel is a weighted sum of shifted copies of the
// input, computed on the input's device in one call.
type fixedFilter struct {
	reach   int
	weights []float32 // K×1×S×S, S = 2·reach+1
	k       int

	mu    sync.Mutex
	cache map[string]Tensor // kernel per device
}

func newFixedFilter(channels [][]tap) *fixedFilter {
	reach := 0
	for _, ch := range channels {
		for _, t := range ch {
			reach = max(reach, abs(t.dy), abs(t.dx))
		}
	}
	s := 2*reach + 1
	w := make([]float32, len(channels)*s*s)
	for i, ch := range channels {
		for _, t := range ch {
			w[i*s*s+(t.dy+reach)*s+t.dx+reach] += t.coef
		}
	}
	return &fixedFilter{reach: reach, weights: w, k: len(channels), cache: map[string]Tensor{}}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func (f *fixedFilter) kernel(device string) Tensor {
	f.mu.Lock()
	defer f.mu.Unlock()
	if k, ok := f.cache[device]; ok {
		return k
	}
	s := int64(2*f.reach + 1)
	k := torchx.FromFloat32(f.weights, int64(f.k), 1, s, s)
	if device != "cpu" {
		k = torchx.To(k, device, -1)
	}
	f.cache[device] = torchx.Persist(k) // outlives the step that first asked for it
	return k
}

// apply maps x (B×1×H×W) to B×K×H×W.
func (f *fixedFilter) apply(x Tensor) Tensor {
	if s := x.Shape(); len(s) != 4 || s[1] != 1 {
		panic(&torchx.Error{Msg: fmt.Sprintf("fixed filter wants a B×1×H×W image, got %v", s)})
	}
	r := int64(f.reach)
	k := f.kernel(torchx.DeviceOf(x))
	if dt := torchx.DTypeOf(x); dt != torchx.Float32 {
		k = torchx.To(k, "", dt)
	}
	padded := torchx.Pad(x, []int64{r, r, r, r}, torchx.PadReplicate, 0)
	return torchx.Conv2d(padded, k, Tensor{}, torchx.ConvOpts{})
}
