package data

import (
	"math/rand"
	"testing"
)

func TestWindowAndPercentiles(t *testing.T) {
	v := []float32{-1000, -300, 50, 400, 1000}
	out := make([]float32, len(v))
	Window{-300, 400}.Apply(v, out)
	want := []float32{0, 0, 0.5, 1, 1}
	for i := range want {
		if out[i] != want[i] {
			t.Fatalf("window: %v, want %v", out, want)
		}
	}
	// 0..100: the p-th percentile is p.
	r := make([]float32, 101)
	for i := range r {
		r[100-i] = float32(i)
	}
	lo, hi := Percentiles(r, 0.5, 99.5)
	if lo != 0.5 || hi != 99.5 {
		t.Fatalf("percentiles %g %g", lo, hi)
	}
}

func TestNormalizerModes(t *testing.T) {
	ct := make([]float32, 1000)
	for i := range ct {
		ct[i] = float32(-1000 + 2*i) // air to +998 HU
	}
	n, err := NewNormalizer(DefaultIntensity, ct)
	if err != nil || !n.IsCT() || n.Test() != (Window{-300, 400}) {
		t.Fatalf("CT detection: %+v %v", n, err)
	}
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 100; i++ {
		w := n.Train(r)
		if w.Lo < -400 || w.Lo > -200 || w.Up < 300 || w.Up > 500 {
			t.Fatalf("jittered window %+v outside the paper's ranges", w)
		}
	}
	mri := make([]float32, 1001)
	for i := range mri {
		mri[i] = float32(i) // 0..1000, no air at −1000: not HU
	}
	n, _ = NewNormalizer(DefaultIntensity, mri)
	if n.IsCT() || n.Test() != (Window{5, 995}) {
		t.Fatalf("MRI percentiles: %+v", n.Test())
	}
	forced := DefaultIntensity
	forced.Mode = "ct"
	if n, _ := NewNormalizer(forced, mri); !n.IsCT() {
		t.Fatal("mode ct not honoured")
	}
	forced.Mode = "pet"
	if _, err := NewNormalizer(forced, mri); err == nil {
		t.Fatal("unknown mode accepted")
	}
}
