package train

import "testing"

// Denoising a fixed image must reduce the L1 loss within 30 steps; the residual net starts
// at the noise level (~0.24 = E|N(0, 0.3²)|).
func TestSmokeLossFalls(t *testing.T) {
	r, err := Smoke("cpu", 30, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.First < 0.15 || r.First > 0.6 {
		t.Fatalf("first loss %.4f far from the noise level", r.First)
	}
	if r.Last > 0.8*r.First {
		t.Fatalf("loss %.4f → %.4f: fell by less than 20%%", r.First, r.Last)
	}
	// Same seed, same numbers (CPU determinism).
	r2, _ := Smoke("cpu", 30, 1, nil)
	if r2.Last != r.Last {
		t.Fatalf("same seed gave %.8f and %.8f", r.Last, r2.Last)
	}
}
