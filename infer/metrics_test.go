package infer

import (
	"math"
	"math/rand"
	"strings"
	"testing"
)

func TestDiceHandComputed(t *testing.T) {
	pred := []int32{1, 1, 1, 0, 2, 0}
	truth := []int32{1, 1, 0, 0, 2, 2}
	if d := Dice(pred, truth, 1); math.Abs(d-0.8) > 1e-12 { // 2·2/(3+2)
		t.Fatalf("dice 1 = %g", d)
	}
	if d := Dice(pred, truth, 2); math.Abs(d-2.0/3) > 1e-12 { // 2·1/(1+2)
		t.Fatalf("dice 2 = %g", d)
	}
	if Dice(pred, truth, 7) != 1 {
		t.Fatal("both empty should be 1")
	}
	if Dice([]int32{0, 0}, []int32{3, 0}, 3) != 0 {
		t.Fatal("empty prediction should be 0")
	}
}

func TestHD95HandComputed(t *testing.T) {
	shape := [3]int{10, 3, 3}
	a := make([]int32, 90)
	b := make([]int32, 90)
	a[1+10*(1+3*1)] = 1 // voxel (1,1,1)
	b[4+10*(1+3*1)] = 1 // voxel (4,1,1): 3 voxels along x
	if d := HD95(a, b, 1, shape, [3]float64{2, 1, 1}); math.Abs(d-6) > 1e-9 {
		t.Fatalf("hd95 %g, want 6 mm", d)
	}
	// Diagonal offset (1,1,1) voxels with spacing (2,3,6): sqrt(4+9+36) = 7 mm.
	b2 := make([]int32, 90)
	b2[2+10*(2+3*2)] = 1
	if d := HD95(a, b2, 1, shape, [3]float64{2, 3, 6}); math.Abs(d-7) > 1e-9 {
		t.Fatalf("hd95 %g, want 7 mm", d)
	}
	if !math.IsNaN(HD95(a, make([]int32, 90), 1, shape, [3]float64{1, 1, 1})) {
		t.Fatal("empty truth should give NaN")
	}
}

// HD95 against brute force over surface pairs on random blobs with anisotropic spacing.
func TestHD95BruteForce(t *testing.T) {
	r := rand.New(rand.NewSource(4))
	shape := [3]int{12, 10, 7}
	sp := [3]float64{0.7, 1.3, 2.5}
	n := shape[0] * shape[1] * shape[2]
	blob := func() []int32 {
		m := make([]int32, n)
		c := [3]float64{r.Float64() * 12, r.Float64() * 10, r.Float64() * 7}
		rad := 2 + 3*r.Float64()
		for k := 0; k < shape[2]; k++ {
			for j := 0; j < shape[1]; j++ {
				for i := 0; i < shape[0]; i++ {
					if math.Hypot(math.Hypot(float64(i)-c[0], float64(j)-c[1]), (float64(k)-c[2])*1.5) < rad+r.Float64() {
						m[i+shape[0]*(j+shape[1]*k)] = 1
					}
				}
			}
		}
		return m
	}
	coord := func(idx int) [3]float64 {
		return [3]float64{float64(idx%shape[0]) * sp[0], float64((idx/shape[0])%shape[1]) * sp[1], float64(idx/(shape[0]*shape[1])) * sp[2]}
	}
	directed := func(from, to []int) []float64 {
		out := make([]float64, len(from))
		for i, p := range from {
			best := math.Inf(1)
			for _, q := range to {
				a, b := coord(p), coord(q)
				best = math.Min(best, math.Sqrt((a[0]-b[0])*(a[0]-b[0])+(a[1]-b[1])*(a[1]-b[1])+(a[2]-b[2])*(a[2]-b[2])))
			}
			out[i] = best
		}
		return out
	}
	for trial := 0; trial < 10; trial++ {
		a, b := blob(), blob()
		sa, sb := surface(maskOf(a, 1), shape), surface(maskOf(b, 1), shape)
		if len(sa) == 0 || len(sb) == 0 {
			continue
		}
		want := math.Max(percentile(directed(sa, sb), 95), percentile(directed(sb, sa), 95))
		if got := HD95(a, b, 1, shape, sp); math.Abs(got-want) > 1e-9 {
			t.Fatalf("trial %d: hd95 %g, brute force %g", trial, got, want)
		}
	}
}

// The report's files exist and the table's means are the mean of results.csv's rows.
func TestEvaluationTable(t *testing.T) {
	ev := &Evaluation{Rows: []Row{
		{Case: "a", Method: "copy", Name: "liver", Dice: 0.5}, {Case: "b", Method: "copy", Name: "liver", Dice: 0.7},
		{Case: "a", Method: "m", Name: "liver", Dice: 0.9}, {Case: "b", Method: "m", Name: "liver", Dice: 0.9},
		{Case: "a", Method: "copy", Name: "spleen", Dice: 0.2}, {Case: "a", Method: "m", Name: "spleen", Dice: 0.6},
	}}
	tab := ev.Table([]string{"copy", "m"})
	for _, want := range []string{"| liver | 60.0 ± 10.0 | 90.0 ± 0.0 |", "| spleen | 20.0 ± 0.0 | 60.0 ± 0.0 |", "| **mean** | **40.0** | **75.0** |"} {
		if !strings.Contains(tab, want) {
			t.Fatalf("table lacks %q:\n%s", want, tab)
		}
	}
	if d := ev.MeanDice("m"); math.Abs(d-0.8) > 1e-12 {
		t.Fatalf("mean dice %g", d)
	}
}
