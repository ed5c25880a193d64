package torchx

import (
	"runtime/metrics"
	"strings"
	"testing"
)

// Temporaries go when the scope ends; the result survives, passes to the enclosing scope and
// goes with it unless returned again; autograd still differentiates through freed handles.
func TestTidyFreesTemporaries(t *testing.T) {
	x := param([]float64{1, 2, 3})
	var tmp, inner Tensor
	var outer Tensor
	y := Tidy(func() Tensor {
		inner = Tidy(func() Tensor {
			tmp = Mul(x, x)    // x²
			return Mul(tmp, x) // x³
		})
		if Defined(tmp) || !Defined(inner) {
			t.Fatalf("inner scope: temporary defined %v, result defined %v", Defined(tmp), Defined(inner))
		}
		outer = AddScalar(inner, 1)
		return Sum(outer, false) // Σ(x³ + 1)
	})
	if Defined(inner) || Defined(outer) || !Defined(y) || !Defined(x) {
		t.Fatalf("outer scope: inner %v outer %v result %v input %v", Defined(inner), Defined(outer), Defined(y), Defined(x))
	}
	if v := Item(y); v != 1+8+27+3 {
		t.Fatalf("value %v", v)
	}
	Backward(y) // d/dx Σ(x³+1) = 3x²
	assertClose(t, "grad", Float64s(Grad(x)), []float64{3, 12, 27}, 1e-12)
}

// Tensors made by another goroutine while a scope is open are not the scope's; Persist takes
// a tensor out of its scope; a panic still frees the scope's tensors and propagates.
func TestTidyOwnership(t *testing.T) {
	var other, kept, lost Tensor
	TidyDo(func() {
		done := make(chan struct{})
		go func() { other = Full([]int64{2}, 1, Float32, "cpu"); close(done) }()
		<-done
		kept = Persist(Full([]int64{2}, 2, Float32, "cpu"))
		lost = Full([]int64{2}, 3, Float32, "cpu")
	})
	if !Defined(other) || !Defined(kept) || Defined(lost) {
		t.Fatalf("other goroutine's %v, persisted %v, temporary %v (want true, true, false)", Defined(other), Defined(kept), Defined(lost))
	}
	var inPanic Tensor
	err := Try(func() {
		TidyDo(func() {
			inPanic = Full([]int64{2}, 1, Float32, "cpu")
			Add(inPanic, Full([]int64{3}, 1, Float32, "cpu")) // shape error: panics
		})
	})
	if err == nil || !strings.Contains(err.Error(), "size") || Defined(inPanic) {
		t.Fatalf("panic in scope: err %v, tensor still defined %v", err, Defined(inPanic))
	}
	// Using a freed tensor is an error, not a crash.
	if err := Try(func() { Add(lost, lost) }); err == nil {
		t.Fatal("a freed tensor was usable")
	}
}

// GC collects only when some tensor was left to the collector since its last run: one made
// outside any scope, one returned from an outermost scope, or one persisted.
func TestGCRunsOnlyForUnscopedTensors(t *testing.T) {
	forced := func() uint64 {
		s := []metrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	x := FromFloat32([]float32{1, 2}, 2) // unscoped
	GC()
	cases := []struct {
		name    string
		work    func()
		collect bool
	}{
		{"nothing", func() {}, false},
		{"everything scoped", func() { TidyDo(func() { Sum(Mul(x, x), false) }) }, false},
		{"nested result kept by the outer scope", func() {
			TidyDo(func() { Tidy(func() Tensor { return Mul(x, x) }) })
		}, false},
		{"made outside any scope", func() { Mul(x, x) }, true},
		{"returned from the outermost scope", func() { Tidy(func() Tensor { return Mul(x, x) }) }, true},
		{"persisted", func() { TidyDo(func() { Persist(Mul(x, x)) }) }, true},
	}
	for _, c := range cases {
		c.work()
		before := forced()
		GC()
		if ran := forced() > before; ran != c.collect {
			t.Errorf("%s: collection ran %v, want %v", c.name, ran, c.collect)
		}
	}
}
