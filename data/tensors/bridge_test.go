package tensors

import (
	"testing"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/torchx"
)

func TestBatchRoundTrip(t *testing.T) {
	b := data.Batch{Size: 2, Crop: 3}
	for i := 0; i < 18; i++ {
		b.A = append(b.A, float32(i))
		b.B = append(b.B, float32(100+i))
	}
	p := FromBatch(b, "cpu")
	if s := p.A.Shape(); len(s) != 4 || s[0] != 2 || s[1] != 1 || s[2] != 3 || s[3] != 3 {
		t.Fatalf("shape %v", s)
	}
	if torchx.Defined(p.PLA) {
		t.Fatal("PL tensor without PLs")
	}
	// Element (n=1, y=2, x=0) is pixel 1·9 + 2·3 + 0 = 15.
	v := torchx.Item(torchx.Narrow(torchx.Narrow(torchx.Narrow(p.A, 0, 1, 1), 2, 2, 1), 3, 0, 1))
	if v != 15 {
		t.Fatalf("element (1,0,2,0) = %g, want 15", v)
	}
	back := ToSlices(p.B)
	for i := range back {
		if back[i] != b.B[i] {
			t.Fatal("round trip changed values")
		}
	}
	if err := torchx.Try(func() { Slices(make([]float32, 5), 1, 2, 2) }); err == nil {
		t.Fatal("wrong pixel count accepted")
	}
}
