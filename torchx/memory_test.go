package torchx

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

func rssBytes(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skip("no /proc/self/statm: RSS not measurable here")
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// 2,000 conv forward/backward/AdamW steps with GC once per step keep RSS flat: between
// step 200 (allocators warmed up) and step 2,000 it may grow by at most 24 MiB. A leak of a
// single activation per step (128 KiB here) would add ~225 MiB.
func TestTrainingLoopRSSFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ManualSeed(0)
	w := MulScalar(Randn([]int64{8, 8, 3, 3}, Float32, "cpu"), 0.1)
	b := Zeros([]int64{8}, Float32, "cpu")
	SetRequiresGrad(w, true)
	SetRequiresGrad(b, true)
	opt := NewAdamW([]Tensor{w, b}, AdamWOpts{LR: 1e-3, WeightDecay: 0.005})
	x := Randn([]int64{4, 8, 32, 32}, Float32, "cpu")
	target := Randn([]int64{4, 8, 32, 32}, Float32, "cpu")
	var at200 int64
	const bound = 24 << 20
	for step := 1; step <= 2000; step++ {
		opt.ZeroGrad()
		y := Relu(Conv2d(x, w, b, ConvOpts{Padding: []int64{1}}))
		loss := L1Loss(y, target, ReduceMean)
		Backward(loss)
		opt.Step()
		GC()
		if step == 200 {
			at200 = rssBytes(t)
		}
	}
	end := rssBytes(t)
	t.Logf("RSS at step 200: %.1f MiB, at step 2000: %.1f MiB", float64(at200)/(1<<20), float64(end)/(1<<20))
	if end-at200 > bound {
		t.Fatalf("RSS grew by %.1f MiB over 1,800 steps (bound %d MiB)", float64(end-at200)/(1<<20), bound>>20)
	}
}
