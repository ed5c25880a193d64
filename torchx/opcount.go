package torchx

// #include <stdlib.h>
// #include "torchx.h"
import "C"

import (
	"strconv"
	"strings"
	"unsafe"
)

// CountOps runs f and returns how many times each ATen operator was dispatched while it ran
// (libtorch's RecordFunction events, nested ones included, from every thread; the PyTorch
// profiler sees the same events). It is how one finds what a step asks of libtorch that a
// reference step does not: extra copies, casts, per-channel loops.
func CountOps(f func()) (map[string]int64, error) {
	var err error
	if err = Try(func() { check(C.tx_opcount_start()) }); err != nil {
		return nil, err
	}
	var out *C.char
	defer func() {
		// Stop even when f panics, so a later count can start.
		if out == nil {
			C.tx_opcount_stop(&out)
		}
		C.free(unsafe.Pointer(out))
	}()
	ferr := Try(f)
	if err = Try(func() { check(C.tx_opcount_stop(&out)) }); err != nil {
		return nil, err
	}
	counts := map[string]int64{}
	for _, l := range strings.Split(strings.TrimSpace(C.GoString(out)), "\n") {
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		n, _ := strconv.ParseInt(l[i+1:], 10, 64)
		counts[l[:i]] = n
	}
	return counts, ferr
}
