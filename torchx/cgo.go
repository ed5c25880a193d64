package torchx

// #cgo CFLAGS: -I${SRCDIR}/csrc
// #cgo LDFLAGS: -L${SRCDIR}/../build/lib -Wl,-rpath,${SRCDIR}/../build/lib -ltorchx
// #include <stdlib.h>
// #include "torchx.h"
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"

	torch "github.com/wangkuiyi/gotorch"
)

// Tensor is gotorch's tensor: the same at::Tensor handle, so gotorch and torchx mix freely.
type Tensor = torch.Tensor

// Error is a libtorch (C++) error, carrying libtorch's message.
type Error struct{ Msg string }

func (e *Error) Error() string { return "libtorch: " + e.Msg }

// check turns a shim error string into a panic with *Error.
func check(err C.TxErr) {
	if err != nil {
		msg := C.GoString(err)
		C.free(unsafe.Pointer(err))
		panic(&Error{Msg: msg})
	}
}

// Try runs f and returns the libtorch error it panicked with, if any. gotorch reports C++
// errors as string panics; those become *Error too. Other panics pass through.
func Try(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			switch e := r.(type) {
			case *Error:
				err = e
			case string:
				err = &Error{Msg: e}
			default:
				panic(r)
			}
		}
	}()
	f()
	return nil
}

// wrap owns a new C handle: gotorch's finalizer frees it when unreachable.
func wrap(p C.TxTensor) Tensor {
	if p == nil {
		return Tensor{}
	}
	ptr := new(unsafe.Pointer)
	*ptr = unsafe.Pointer(p)
	torch.SetTensorFinalizer(ptr)
	track(ptr)
	return Tensor{T: ptr}
}

// Adopt takes ownership of a new at::Tensor* that another cgo package's shim call returned
// (dist's collectives-backed ops), exactly as torchx's own results: a finalizer and the
// enclosing scope free it.
func Adopt(handle unsafe.Pointer) Tensor { return wrap(C.TxTensor(handle)) }

// h is the C handle of t; nil for an undefined (zero) Tensor, which the shim reads as absent.
func h(t Tensor) C.TxTensor {
	if t.T == nil {
		return nil
	}
	return C.TxTensor(*t.T)
}

// Defined reports whether t holds a tensor.
func Defined(t Tensor) bool { return t.T != nil && *t.T != nil }

// call1 runs a shim function producing one tensor. The inputs are kept reachable until the
// call returns: without that, Go may finalize (free) an input while C++ still reads it.
func call1(inputs []Tensor, fn func(out *C.TxTensor) C.TxErr) Tensor {
	var out C.TxTensor
	check(fn(&out))
	keep(inputs...)
	return wrap(out)
}

// keep marks tensors as used up to this point, so their finalizers cannot run earlier.
func keep(ts ...Tensor) {
	for i := range ts {
		runtime.KeepAlive(ts[i].T)
	}
}

func ints(v []int64) *C.int64_t {
	if len(v) == 0 {
		return nil
	}
	return (*C.int64_t)(unsafe.Pointer(&v[0]))
}

func handles(ts []Tensor) (*C.TxTensor, []C.TxTensor) {
	hs := make([]C.TxTensor, len(ts))
	for i, t := range ts {
		if !Defined(t) {
			panic(&Error{Msg: fmt.Sprintf("tensor %d of %d is undefined", i, len(ts))})
		}
		hs[i] = h(t)
	}
	if len(hs) == 0 {
		return nil, hs
	}
	return &hs[0], hs
}

// Free releases t's C++ tensor now instead of at the next GC. t (and any copy of it) must not
// be used afterwards; using it gives a "nil tensor handle" error, not a crash.
func Free(t Tensor) {
	if t.T == nil || *t.T == nil {
		return
	}
	runtime.SetFinalizer(t.T, nil)
	C.tx_free(C.TxTensor(*t.T))
	*t.T = nil
}

// GC collects unreachable tensors (see the package doc). Call it once per loop step. It runs
// Go's collector only when tensors were left to it since the last run (made outside any
// scope, returned from an outermost one, or persisted): a loop whose every tensor lives in
// scopes (a training step under TidyDo) skips the collection, which costs about half a
// millisecond per call, a percent of a small GPU step.
func GC() {
	if unscoped.Swap(0) > 0 {
		runtime.GC()
	}
}
