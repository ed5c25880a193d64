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

// SlicesOn is Slices created directly on device (a non-blocking, page-locked upload on CUDA:
// torchx.FromFloat32On).
func SlicesOn(px []float32, n, h, w int, device string) torchx.Tensor {
	if len(px) != n*h*w {
		panic(&torchx.Error{Msg: fmt.Sprintf("%d pixels are not %d slices of %d×%d", len(px), n, h, w)})
	}
	return torchx.FromFloat32On(px, device, int64(n), 1, int64(h), int64(w))
}

// FromBatch converts a sampled batch and moves it to device ("cpu", "cuda:0"). On a GPU the
// uploads do not wait for the work already queued there (see torchx.FromFloat32On).
func FromBatch(b data.Batch, device string) Pairs {
	mv := func(px []float32) torchx.Tensor {
		if px == nil {
			return torchx.Tensor{}
		}
		return SlicesOn(px, b.Size, b.Crop, b.Crop, device)
	}
	return Pairs{A: mv(b.A), B: mv(b.B), PLA: mv(b.PLA), PLB: mv(b.PLB)}
}

// ToSlices copies an N×C×H×W tensor (any device) back to Go, row-major.
func ToSlices(t torchx.Tensor) []float32 { return torchx.Float32s(t) }

// Patches is a 3D training batch as tensors on device: images B×1×D×H×W (float32), class
// indices B×D×H×W (int64) and the known-voxel weights B×1×D×H×W (float32).
type Patches struct {
	Image, Labels, Known torchx.Tensor
}

// FromPatchBatch converts a sampled patch batch and moves it to device.
func FromPatchBatch(b *data.PatchBatch, device string) Patches {
	d, h, w := int64(b.Patch[0]), int64(b.Patch[1]), int64(b.Patch[2])
	bb := int64(b.B)
	lbl := make([]int64, len(b.Labels))
	for i, v := range b.Labels {
		lbl[i] = int64(v)
	}
	p := Patches{
		Image:  torchx.FromFloat32On(b.Image, device, bb, 1, d, h, w),
		Labels: torchx.FromInt64On(lbl, device, bb, d, h, w),
		Known:  torchx.FromFloat32On(b.Known, device, bb, 1, d, h, w),
	}
	return p
}
