package torchx

// #include <stdlib.h>
// #include "torchx.h"
import "C"

import (
	"sort"
	"unsafe"
)

// SaveTorchScript writes a TorchScript module holding the named tensors (parameters when
// params[name], else buffers; names must be identifiers) and the methods in source, for
// torch.jit.load in Python or C++.
func SaveTorchScript(path string, tensors map[string]Tensor, params map[string]bool, source string) error {
	names := make([]string, 0, len(tensors))
	for k := range tensors {
		names = append(names, k)
	}
	sort.Strings(names)
	cn := make([]*C.char, len(names))
	ts := make([]Tensor, len(names))
	isp := make([]C.int, len(names))
	for i, k := range names {
		cn[i] = C.CString(k)
		ts[i] = tensors[k]
		isp[i] = cbool(params[k])
	}
	defer func() {
		for _, c := range cn {
			C.free(unsafe.Pointer(c))
		}
	}()
	src, p := C.CString(source), C.CString(path)
	defer C.free(unsafe.Pointer(src))
	defer C.free(unsafe.Pointer(p))
	return Try(func() {
		hs, _ := handles(ts)
		var np **C.char
		var ip *C.int
		if len(cn) > 0 {
			np, ip = &cn[0], &isp[0]
		}
		check(C.tx_jit_save(np, hs, ip, C.int(len(names)), src, p))
		keep(ts...)
	})
}

// RunTorchScript loads a TorchScript module with libtorch's C++ loader (torch::jit::load)
// and returns forward(inputs...).
func RunTorchScript(path string, inputs ...Tensor) (Tensor, error) {
	p := C.CString(path)
	defer C.free(unsafe.Pointer(p))
	var out Tensor
	err := Try(func() {
		hs, _ := handles(inputs)
		out = call1(inputs, func(o *C.TxTensor) C.TxErr { return C.tx_jit_run(p, hs, C.int(len(inputs)), o) })
	})
	return out, err
}
