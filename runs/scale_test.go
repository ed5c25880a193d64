package runs

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
)

// The training scale is the median over volumes of each one's mm/px as the network saw it:
// slices resized to the midpoint R of data.resize_range. Sliced along z, rows are array
// axis 0 and columns axis 1: with R = 34,
//
//	32×32 px of 1.5×1.5 mm → 48/34 mm/px; 40×20 of 1×2 → √(40/34 · 40/34) = 40/34;
//	16×16 of 0.5×0.5 → 8/34. Their own pixel sizes: 1.5, √2, 0.5 → median √2.
func TestMeasureScale(t *testing.T) {
	dir := t.TempDir()
	vols := []struct {
		shape   [3]int
		spacing [3]float64
	}{
		{[3]int{32, 32, 8}, [3]float64{1.5, 1.5, 2.5}},
		{[3]int{40, 20, 8}, [3]float64{1, 2, 2.5}},
		{[3]int{16, 16, 8}, [3]float64{0.5, 0.5, 2.5}},
	}
	var cases []data.Case
	for i, v := range vols {
		g := data.NewGeometry(v.shape, v.spacing, [3]float64{})
		p := filepath.Join(dir, fmt.Sprintf("v%d.nii.gz", i))
		if err := data.WriteImageInt16(p, make([]float32, g.NumVoxels()), &g, data.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, data.Case{ID: fmt.Sprint(i), Image: p})
	}
	c := configs.Defaults()
	c.Data.ResizeRange, c.Data.Crop = [2]int{32, 36}, 32
	s, err := MeasureScale(c, cases)
	if err != nil {
		t.Fatal(err)
	}
	want := Scale{MMPerPx: 40.0 / 34, Volumes: 3, Resize: 34, Min: 8.0 / 34, Max: 48.0 / 34, Native: math.Sqrt2}
	for _, f := range [][2]float64{{s.MMPerPx, want.MMPerPx}, {s.Min, want.Min}, {s.Max, want.Max}, {s.Resize, want.Resize}, {s.Native, want.Native}} {
		if math.Abs(f[0]-f[1]) > 1e-9 {
			t.Fatalf("scale %+v, want %+v", s, want)
		}
	}
	if s.Volumes != 3 {
		t.Fatalf("%d volumes measured", s.Volumes)
	}
	run := t.TempDir()
	if _, err := ReadScale(run); err == nil || !strings.Contains(err.Error(), "no scale.json") {
		t.Fatalf("a run without scale.json: %v", err)
	}
	if err := WriteScale(run, s); err != nil {
		t.Fatal(err)
	}
	if back, err := ReadScale(run); err != nil || back != s {
		t.Fatalf("read back %+v (%v), wrote %+v", back, err, s)
	}
}
