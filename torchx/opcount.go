package torchx

// #include <stdlib.h>
// #include "torchx.h"
import "C"

import (
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// CountOps runs f and returns how many times each ATen operator was dispatched while it ran
// (libtorch's RecordFunction events, nested ones included, from every thread; the PyTorch
// profiler sees the same events). It is how one finds what a step asks of libtorch that a
// reference step does not: extra copies, casts, per-channel loops.
func CountOps(f func()) (map[string]int64, error) {
	stats, err := runOpCount(f, false)
	counts := make(map[string]int64, len(stats))
	for name, s := range stats {
		counts[name] = s.Count
	}
	return counts, err
}

// OpStat is what ProfileOps saw of one operator name.
type OpStat struct {
	Count int64 // every dispatch, nested ones included
	// Host time of the outermost events of this name: on the calling thread (inside libtorch
	// on the caller's behalf, waits for the GPU included) and on any other thread (autograd's
	// device threads run the backward pass there).
	Caller, Other time.Duration
}

// ProfileOps runs f on the calling goroutine's OS thread and returns, per operator name, the
// dispatch count and the host time spent in it. The calling thread's total, set beside f's
// wall time, splits that time into libtorch's share and the caller's own (Go, cgo, scopes).
// Timing every event costs about a microsecond each, so profile other steps than the timed ones.
func ProfileOps(f func()) (map[string]OpStat, error) {
	runtime.LockOSThread() // "the calling thread" must stay one thread
	defer runtime.UnlockOSThread()
	return runOpCount(f, true)
}

func runOpCount(f func(), timed bool) (map[string]OpStat, error) {
	var err error
	if err = Try(func() { check(C.tx_opcount_start(cbool(timed))) }); err != nil {
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
	stats := map[string]OpStat{}
lines:
	for _, l := range strings.Split(strings.TrimSpace(C.GoString(out)), "\n") {
		// "name count caller_ns other_ns"; names may hold spaces ("autograd::engine::…: X"),
		// so the three numbers are taken from the right.
		var v [3]int64
		for i := 2; i >= 0; i-- {
			j := strings.LastIndexByte(l, ' ')
			if j < 0 {
				continue lines
			}
			v[i], _ = strconv.ParseInt(l[j+1:], 10, 64)
			l = l[:j]
		}
		stats[l] = OpStat{Count: v[0], Caller: time.Duration(v[1]), Other: time.Duration(v[2])}
	}
	return stats, ferr
}
