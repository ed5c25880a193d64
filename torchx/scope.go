package torchx

import (
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Scopes free a computation's temporaries as soon as it ends, as Python's reference counting
// frees a tensor at its last use. Without them every tensor of a training step lives until
// the next GC and its finalizer: a UNETR++ step then holds about twice PyTorch's memory, and
// on the CPU each of those tensors takes fresh pages from the kernel (page faults) where
// PyTorch reuses freed ones. Freeing a handle never invalidates what autograd saved for the
// backward pass, or a view's storage: both hold their own references in C++.
//
// A scope belongs to the OS thread that opened it (the goroutine is locked to it while the
// scope is open), so tensors made meanwhile by other goroutines are never taken.

type scope struct {
	tid   int
	owned []*unsafe.Pointer
}

var (
	openScopes atomic.Int32 // fast path: wrap does nothing when no scope is open
	// unscoped counts handles left to the garbage collector since GC last ran it: made
	// outside any scope, returned from an outermost scope, or persisted. While it is zero a
	// collection would free no tensor, and GC skips it.
	unscoped   atomic.Int64
	scopeMu    sync.Mutex
	scopeStack = map[int][]*scope{} // by OS thread id
)

// track records a new handle in the innermost scope of the calling thread, if any.
func track(p *unsafe.Pointer) {
	if openScopes.Load() == 0 {
		unscoped.Add(1)
		return
	}
	tid := threadID()
	scopeMu.Lock()
	if st := scopeStack[tid]; len(st) > 0 {
		s := st[len(st)-1]
		s.owned = append(s.owned, p)
	} else {
		unscoped.Add(1)
	}
	scopeMu.Unlock()
}

// Tidy runs f and frees every tensor created while it ran except those it returns; these
// pass to the enclosing scope, if there is one.
func Tidy(f func() Tensor) Tensor {
	var out Tensor
	tidy(func() []Tensor { out = f(); return []Tensor{out} })
	return out
}

// TidyAll is Tidy for several results.
func TidyAll(f func() []Tensor) []Tensor {
	var out []Tensor
	tidy(func() []Tensor { out = f(); return out })
	return out
}

// TidyDo runs f and frees every tensor created while it ran.
func TidyDo(f func()) { tidy(func() []Tensor { f(); return nil }) }

// Persist takes t out of the scopes it was created in, for a tensor that outlives the
// computation that made it (a cache): the GC and its finalizer free it as before.
func Persist(t Tensor) Tensor {
	if t.T == nil || openScopes.Load() == 0 {
		return t
	}
	tid := threadID()
	scopeMu.Lock()
	defer scopeMu.Unlock()
	for _, s := range scopeStack[tid] {
		for i, p := range s.owned {
			if p == t.T {
				s.owned = append(s.owned[:i], s.owned[i+1:]...)
				unscoped.Add(1)
				return t
			}
		}
	}
	return t
}

func tidy(f func() []Tensor) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := threadID()
	s := &scope{tid: tid}
	scopeMu.Lock()
	scopeStack[tid] = append(scopeStack[tid], s)
	scopeMu.Unlock()
	openScopes.Add(1)
	var results []Tensor
	defer func() {
		// Also on a panic: a failed step's tensors go too.
		scopeMu.Lock()
		st := scopeStack[tid]
		st = st[:len(st)-1]
		if len(st) == 0 {
			delete(scopeStack, tid)
		} else {
			scopeStack[tid] = st
		}
		keep := make(map[*unsafe.Pointer]bool, len(results))
		for _, r := range results {
			keep[r.T] = true
		}
		var free []*unsafe.Pointer
		for _, p := range s.owned {
			if !keep[p] {
				free = append(free, p)
			} else if len(st) > 0 {
				st[len(st)-1].owned = append(st[len(st)-1].owned, p)
			} else {
				unscoped.Add(1)
			}
		}
		scopeMu.Unlock()
		openScopes.Add(-1)
		for _, p := range free {
			Free(Tensor{T: p})
		}
	}()
	results = f()
}
