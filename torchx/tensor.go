package torchx

// #include <stdlib.h>
// #include "torchx.h"
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"
)

// DType is a libtorch scalar type (the numbering of c10::ScalarType).
type DType int8

// Scalar types sli2vol uses.
const (
	Uint8    DType = 0
	Int8     DType = 1
	Int16    DType = 2
	Int32    DType = 3
	Int64    DType = 4
	Float16  DType = 5
	Float32  DType = 6
	Float64  DType = 7
	Bool     DType = 11
	BFloat16 DType = 15
)

func numel(shape []int64) int64 {
	n := int64(1)
	for _, s := range shape {
		if s < 0 {
			panic(&Error{Msg: fmt.Sprintf("negative size in shape %v", shape)})
		}
		n *= s
	}
	return n
}

// fromData copies n values of type dt at p into a new tensor of the given shape: on the CPU
// for device "" or "cpu", else straight onto device (tx_from_data_on: on CUDA a page-locked,
// non-blocking upload).
func fromData(p unsafe.Pointer, n int, dt DType, device string, shape []int64) Tensor {
	if int64(n) != numel(shape) {
		panic(&Error{Msg: fmt.Sprintf("%d values do not fill shape %v", n, shape)})
	}
	var dummy [1]int64
	if n == 0 {
		p = unsafe.Pointer(&dummy[0])
	}
	if device == "" || device == "cpu" {
		return call1(nil, func(out *C.TxTensor) C.TxErr {
			return C.tx_from_data(p, C.int8_t(dt), ints(shape), C.int(len(shape)), out)
		})
	}
	d, done := cstr(device)
	defer done()
	return call1(nil, func(out *C.TxTensor) C.TxErr {
		return C.tx_from_data_on(p, C.int8_t(dt), ints(shape), C.int(len(shape)), d, out)
	})
}

// fromSlice is fromData for a Go slice, kept alive until its values are copied.
func fromSlice[E float32 | float64 | int64 | uint8](data []E, dt DType, device string, shape []int64) Tensor {
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	t := fromData(p, len(data), dt, device, shape)
	runtime.KeepAlive(data)
	return t
}

// FromFloat32On copies data into a new float32 tensor of the given shape on device ("" or
// "cpu": FromFloat32). A CUDA upload goes through page-locked memory without making the host
// wait for the GPU, as PyTorch's pin_memory + non_blocking=True does; data may be reused as
// soon as this returns.
func FromFloat32On(data []float32, device string, shape ...int64) Tensor {
	return fromSlice(data, Float32, device, shape)
}

// FromInt64On is FromFloat32On for int64 data.
func FromInt64On(data []int64, device string, shape ...int64) Tensor {
	return fromSlice(data, Int64, device, shape)
}

// FromFloat32 copies data (one memcpy) into a new CPU float32 tensor of the given shape.
func FromFloat32(data []float32, shape ...int64) Tensor { return fromSlice(data, Float32, "", shape) }

// FromFloat64 copies data into a new CPU float64 tensor of the given shape.
func FromFloat64(data []float64, shape ...int64) Tensor { return fromSlice(data, Float64, "", shape) }

// FromInt64 copies data into a new CPU int64 tensor of the given shape.
func FromInt64(data []int64, shape ...int64) Tensor { return fromSlice(data, Int64, "", shape) }

// FromUint8 copies data into a new CPU uint8 tensor of the given shape.
func FromUint8(data []uint8, shape ...int64) Tensor { return fromSlice(data, Uint8, "", shape) }

func copyOut(t Tensor, dt DType, dst unsafe.Pointer, nbytes int) {
	check(C.tx_copy_out(h(t), C.int8_t(dt), dst, C.int64_t(nbytes)))
	runtime.KeepAlive(t.T)
}

// Float32s copies t (any dtype, any device) into a new []float32 in row-major order.
func Float32s(t Tensor) []float32 {
	out := make([]float32, Numel(t))
	var p unsafe.Pointer
	if len(out) > 0 {
		p = unsafe.Pointer(&out[0])
	}
	copyOut(t, Float32, p, 4*len(out))
	return out
}

// Float64s copies t (any dtype, any device) into a new []float64 in row-major order.
func Float64s(t Tensor) []float64 {
	out := make([]float64, Numel(t))
	var p unsafe.Pointer
	if len(out) > 0 {
		p = unsafe.Pointer(&out[0])
	}
	copyOut(t, Float64, p, 8*len(out))
	return out
}

// Uint8s copies t (any dtype, any device) into a new []uint8 in row-major order: byte blobs
// (optimizer state in a checkpoint, a broadcast) without an 8-byte element per byte.
func Uint8s(t Tensor) []uint8 {
	out := make([]uint8, Numel(t))
	var p unsafe.Pointer
	if len(out) > 0 {
		p = unsafe.Pointer(&out[0])
	}
	copyOut(t, Uint8, p, len(out))
	return out
}

// Int64s copies t (any dtype, any device) into a new []int64 in row-major order.
func Int64s(t Tensor) []int64 {
	out := make([]int64, Numel(t))
	var p unsafe.Pointer
	if len(out) > 0 {
		p = unsafe.Pointer(&out[0])
	}
	copyOut(t, Int64, p, 8*len(out))
	return out
}

// Numel is the number of elements of t.
func Numel(t Tensor) int64 {
	var n C.int64_t
	check(C.tx_numel(h(t), &n))
	runtime.KeepAlive(t.T)
	return int64(n)
}

// Shape of t.
func Shape(t Tensor) []int64 { return t.Shape() }

// DTypeOf is t's scalar type.
func DTypeOf(t Tensor) DType {
	var d C.int8_t
	check(C.tx_dtype(h(t), &d))
	runtime.KeepAlive(t.T)
	return DType(d)
}

// DeviceOf is t's device as libtorch names it ("cpu", "cuda:0").
func DeviceOf(t Tensor) string {
	var buf [64]C.char
	check(C.tx_device(h(t), &buf[0], C.int(len(buf))))
	runtime.KeepAlive(t.T)
	return C.GoString(&buf[0])
}

func factory(shape []int64, fn func(s *C.int64_t, n C.int, out *C.TxTensor) C.TxErr) Tensor {
	numel(shape) // validates
	return call1(nil, func(out *C.TxTensor) C.TxErr { return fn(ints(shape), C.int(len(shape)), out) })
}

func cstr(s string) (*C.char, func()) {
	c := C.CString(s)
	return c, func() { C.free(unsafe.Pointer(c)) }
}

// Zeros on a device ("cpu", "cuda", "cuda:1").
func Zeros(shape []int64, dt DType, device string) Tensor {
	d, done := cstr(device)
	defer done()
	return factory(shape, func(s *C.int64_t, n C.int, out *C.TxTensor) C.TxErr {
		return C.tx_empty_like_zeros(s, n, C.int8_t(dt), d, out)
	})
}

// Full is a tensor filled with v.
func Full(shape []int64, v float64, dt DType, device string) Tensor {
	d, done := cstr(device)
	defer done()
	return factory(shape, func(s *C.int64_t, n C.int, out *C.TxTensor) C.TxErr {
		return C.tx_full(s, n, C.double(v), C.int8_t(dt), d, out)
	})
}

// Randn draws N(0,1) values from libtorch's global generator (see ManualSeed).
func Randn(shape []int64, dt DType, device string) Tensor {
	d, done := cstr(device)
	defer done()
	return factory(shape, func(s *C.int64_t, n C.int, out *C.TxTensor) C.TxErr {
		return C.tx_randn(s, n, C.int8_t(dt), d, out)
	})
}

// Rand draws U[0,1) values from libtorch's global generator.
func Rand(shape []int64, dt DType, device string) Tensor {
	d, done := cstr(device)
	defer done()
	return factory(shape, func(s *C.int64_t, n C.int, out *C.TxTensor) C.TxErr {
		return C.tx_rand(s, n, C.int8_t(dt), d, out)
	})
}

// To moves t to a device ("" keeps it) and converts it to dt (-1 keeps it).
func To(t Tensor, device string, dt DType) Tensor {
	var d *C.char
	if device != "" {
		var done func()
		d, done = cstr(device)
		defer done()
	}
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr { return C.tx_to(h(t), d, C.int8_t(dt), out) })
}

// Contiguous returns t in row-major memory order.
func Contiguous(t Tensor) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr { return C.tx_contiguous(h(t), out) })
}

// Detach returns t cut from the autograd graph (sharing storage).
func Detach(t Tensor) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr { return C.tx_detach(h(t), out) })
}

// SetRequiresGrad marks t (a leaf) as a parameter whose gradient autograd accumulates.
func SetRequiresGrad(t Tensor, on bool) {
	check(C.tx_set_requires_grad(h(t), cbool(on)))
	runtime.KeepAlive(t.T)
}

// Grad is t's accumulated gradient; an undefined Tensor when there is none.
func Grad(t Tensor) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr { return C.tx_grad(h(t), out) })
}

// Backward runs autograd from the scalar t.
func Backward(t Tensor) {
	check(C.tx_backward(h(t)))
	runtime.KeepAlive(t.T)
}

// CopyInto copies src into dst in place, outside autograd (for loading weights).
func CopyInto(dst, src Tensor) {
	check(C.tx_copy_(h(dst), h(src)))
	runtime.KeepAlive(dst.T)
	runtime.KeepAlive(src.T)
}

// AddScalarInPlace adds s to every element of t in place, outside autograd (a counter, a
// buffer): one kernel where CopyInto(t, AddScalar(t, s)) is two.
func AddScalarInPlace(t Tensor, s float64) {
	check(C.tx_add_scalar_(h(t), C.double(s)))
	runtime.KeepAlive(t.T)
}

// Item is the value of a one-element tensor.
func Item(t Tensor) float64 {
	var v C.double
	check(C.tx_item(h(t), &v))
	runtime.KeepAlive(t.T)
	return float64(v)
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}
