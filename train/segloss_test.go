package train

import (
	"math"
	"math/rand"
	"testing"

	"github.com/sli2vol/sli2vol/torchx"
)

// DiceCELoss against the formula evaluated voxel by voxel in float64.
func TestDiceCELossByHand(t *testing.T) {
	const b, k, n = 2, 3, 8 // 2 volumes of 2×2×2 voxels, 3 classes
	r := rand.New(rand.NewSource(4))
	logits := make([]float64, b*k*n)
	for i := range logits {
		logits[i] = r.NormFloat64()
	}
	target := make([]int64, b*n)
	known := make([]float64, b*n)
	for i := range target {
		target[i] = int64(r.Intn(k))
		known[i] = float64(r.Intn(4)/3 ^ 1) // about ¾ known
	}
	for _, allKnown := range []bool{true, false} {
		kn := append([]float64(nil), known...)
		if allKnown {
			for i := range kn {
				kn[i] = 1
			}
		}
		var ceSum, cnt float64
		tp, fp, fn := make([]float64, k), make([]float64, k), make([]float64, k)
		for bi := 0; bi < b; bi++ {
			for v := 0; v < n; v++ {
				w := kn[bi*n+v]
				z := 0.0
				for c := 0; c < k; c++ {
					z += math.Exp(logits[(bi*k+c)*n+v])
				}
				tc := int(target[bi*n+v])
				if w > 0 {
					ceSum -= math.Log(math.Exp(logits[(bi*k+tc)*n+v]) / z)
					cnt++
				}
				for c := 0; c < k; c++ {
					p := math.Exp(logits[(bi*k+c)*n+v]) / z * w
					y := 0.0
					if c == tc {
						y = w
					}
					tp[c] += p * y
					fp[c] += p * (1 - y) * w
					fn[c] += (1 - p) * y
				}
			}
		}
		var dice float64
		for c := 1; c < k; c++ {
			dice += (2*tp[c] + 1e-5) / (2*tp[c] + fp[c] + fn[c] + 1e-5)
		}
		want := ceSum/cnt + 1 - dice/float64(k-1)
		got := torchx.Item(DiceCELoss(torchx.FromFloat64(logits, b, k, 2, 2, 2), torchx.FromInt64(target, b, 2, 2, 2),
			torchx.FromFloat64(kn, b, 1, 2, 2, 2)))
		if math.Abs(got-want) > 1e-9 {
			t.Fatalf("all known %v: loss %.12f, by hand %.12f", allKnown, got, want)
		}
	}
}
