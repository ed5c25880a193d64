package torchx

import (
	"testing"
	"time"
)

// Two adds and a multiply are two aten::add and one aten::mul; a failing op is reported and
// counting stops, so the next count starts clean.
func TestCountOps(t *testing.T) {
	a := Full([]int64{3}, 2, Float32, "cpu")
	c, err := CountOps(func() { Mul(Add(a, a), Add(a, a)) })
	if err != nil {
		t.Fatal(err)
	}
	if c["aten::add"] != 2 || c["aten::mul"] != 1 {
		t.Fatalf("counts %v: want aten::add 2, aten::mul 1", c)
	}
	if _, err := CountOps(func() { Add(a, Full([]int64{4}, 1, Float32, "cpu")) }); err == nil {
		t.Fatal("a shape error inside the counted work was not reported")
	}
	c, err = CountOps(func() {})
	if err != nil || c["aten::add"] != 0 {
		t.Fatalf("after a failed count: %v %v", c, err)
	}
}

// ProfileOps's times are the outermost events on the calling thread: a matmul's time is
// about what the Go clock measures around the call (its nested aten::mm is counted but not
// timed again), and a sleep between operators is in no operator's time.
func TestProfileOps(t *testing.T) {
	a := Randn([]int64{512, 512}, Float32, "cpu")
	var around time.Duration
	t0 := time.Now()
	stats, err := ProfileOps(func() {
		time.Sleep(30 * time.Millisecond)
		s := time.Now()
		for i := 0; i < 4; i++ {
			Matmul(a, a)
		}
		around = time.Since(s)
	})
	wall := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	mm, inner := stats["aten::matmul"], stats["aten::mm"]
	if mm.Count != 4 || inner.Count != 4 {
		t.Fatalf("counts matmul %d mm %d, want 4 and 4", mm.Count, inner.Count)
	}
	if inner.Caller != 0 || inner.Other != 0 {
		t.Fatalf("aten::mm is nested in aten::matmul but was timed: %+v", inner)
	}
	if mm.Caller > around || mm.Caller < around*8/10 {
		t.Fatalf("aten::matmul %v on the calling thread, %v measured around the four calls", mm.Caller, around)
	}
	var sum time.Duration
	for _, s := range stats {
		sum += s.Caller
	}
	if sum > wall-30*time.Millisecond {
		t.Fatalf("operators' caller time %v includes the 30 ms sleep (wall %v)", sum, wall)
	}
	if c, err := CountOps(func() { Matmul(a, a) }); err != nil || c["aten::matmul"] != 1 {
		t.Fatalf("counting after profiling: %v %v", c, err)
	}
}
