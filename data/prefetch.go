package data

import (
	"iter"
	"sync"
)

// Prefetch prepares items (training batches) ahead of their use, so that reading, decoding
// and cropping overlap the step; items still come out in their order, whatever finished
// first, so a run with prefetching sees exactly the batches of one without. At most
// Depth items wait beyond the one in use, which bounds the memory it takes.
type Prefetch struct {
	Workers int // goroutines building items
	Depth   int // items built ahead (0, or no workers: each built when asked)
}

// Ahead yields build(i) for i in [from, n), in order, built by p's workers ahead of use.
// build must be safe to run concurrently and depend on i alone.
func Ahead[T any](p Prefetch, from, n int, build func(int) T) iter.Seq2[int, T] {
	if p.Workers <= 0 || p.Depth <= 0 {
		return func(yield func(int, T) bool) {
			for i := from; i < n; i++ {
				if !yield(i, build(i)) {
					return
				}
			}
		}
	}
	// A panic while building travels with the item and is raised where the item is used,
	// as it would be without prefetching (a worker's panic would otherwise end the process
	// without the caller's deferred cleanup).
	type result struct {
		v     T
		panic any
	}
	type job struct {
		i   int
		out chan result
	}
	buildSafely := func(build func(int) T, i int) (r result) {
		defer func() { r.panic = recover() }()
		return result{v: build(i)}
	}
	return func(yield func(int, T) bool) {
		done := make(chan struct{})
		jobs := make(chan job)
		order := make(chan chan result, p.Depth) // its capacity is the look-ahead
		go func() {
			defer close(jobs)
			for i := from; i < n; i++ {
				j := job{i, make(chan result, 1)}
				select {
				case order <- j.out:
				case <-done:
					return
				}
				select {
				case jobs <- j:
				case <-done:
					return
				}
			}
			close(order)
		}()
		var wg sync.WaitGroup
		for range p.Workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range jobs {
					j.out <- buildSafely(build, j.i) // buffered: never blocks
				}
			}()
		}
		// An early stop ends the feeder, then waits for the items being built.
		defer func() { close(done); wg.Wait() }()
		i := from
		for out := range order {
			r := <-out
			if r.panic != nil {
				panic(r.panic)
			}
			if !yield(i, r.v) {
				return
			}
			i++
		}
	}
}
