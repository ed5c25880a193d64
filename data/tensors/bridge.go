// Package tensors is data's one bridge to libtorch: slices and batches of float32 pixels
// become N×C×H×W tensors (one memcpy each) and come back as Go slices.
package tensors

import (
	"fmt"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/torchx"
)

// Slices stacks n slices of h×w pixels (concatenated row-major in px) as an n×1×h×w tensor.
func Slices(px []float32, n, h, w int) torchx.Tensor {
	if len(px) != n*h*w {
		panic(&torchx.Error{Msg: fmt.Sprintf("%d pixels are not %d slices of %d×%d", len(px), n, h, w)})
	}
	return torchx.FromFloat32(px, int64(n), 1, int64(h), int64(w))
}

// Pairs is a training batch as tensors: slices j and j+k and their pseudo-label masks
// (undefined tensors when the batch has none), each N×1×crop×crop, on device.
type Pairs struct {
	A, B, PLA, PLB torchx.Tensor
}

// FromBatch converts a sampled batch and moves it to device ("cpu", "cuda:0").
func FromBatch(b data.Batch, device string) Pairs {
	mv := func(px []float32) torchx.Tensor {
		if px == nil {
			return torchx.Tensor{}
		}
		t := Slices(px, b.Size, b.Crop, b.Crop)
		if device != "" && device != "cpu" {
			t = torchx.To(t, device, -1)
		}
		return t
	}
	return Pairs{A: mv(b.A), B: mv(b.B), PLA: mv(b.PLA), PLB: mv(b.PLB)}
}

// ToSlices copies an N×C×H×W tensor (any device) back to Go, row-major.
func ToSlices(t torchx.Tensor) []float32 { return torchx.Float32s(t) }
