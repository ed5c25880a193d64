package infer

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/internal/atomicfile"
)

// DriftPNG plots mean slice Dice against distance from the annotated slice, one line per
// method: how fast each method's error accumulates as it propagates.
func (ev *Evaluation) DriftPNG(path string, methods []string) error {
	p := plot.New()
	p.Title.Text = "Error drift"
	p.X.Label.Text = "distance from the annotated slice (slices)"
	p.Y.Label.Text = "mean slice Dice"
	p.Y.Min, p.Y.Max = 0, 1
	var lines []any
	for _, m := range methods {
		var ds []int
		for d := range ev.drift[m] {
			ds = append(ds, d)
		}
		sort.Ints(ds)
		pts := make(plotter.XYs, len(ds))
		for i, d := range ds {
			a := ev.drift[m][d]
			pts[i] = plotter.XY{X: float64(d), Y: a[0] / a[1]}
		}
		lines = append(lines, m, pts)
	}
	if err := plotutil.AddLinePoints(p, lines...); err != nil {
		return err
	}
	p.Legend.Top = true
	w, err := p.WriterTo(7*vg.Inch, 4*vg.Inch, "png")
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if _, err := w.WriteTo(&b); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b.Bytes())
}

// overlay is one case's figure: the structure's truth and each method's prediction.
type overlay struct {
	prep    *Prepared
	truth   []int32
	id      int32
	ann     int
	methods []string
	preds   map[string][]int32
}

// overlaySlices picks the annotated slice, ±5, ±10 and the structure's far ends.
func (o *overlay) overlaySlices() []int {
	s := o.prep.Slicer
	first, last := -1, -1
	for n := 0; n < s.Len(); n++ {
		for _, v := range data.Slice(s, o.truth, n) {
			if v == o.id {
				if first < 0 {
					first = n
				}
				last = n
				break
			}
		}
	}
	seen := map[int]bool{}
	var out []int
	for _, n := range []int{first, o.ann - 10, o.ann - 5, o.ann, o.ann + 5, o.ann + 10, last} {
		if n >= 0 && n < s.Len() && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out
}

// PNG draws rows of slices, one row per method: the image in grey, the truth's outline in
// green, the prediction in translucent red; the annotated slice's column is framed yellow.
func (o *overlay) PNG(path string) error {
	s := o.prep.Slicer
	h, w := s.Size()
	cols := o.overlaySlices()
	const gap = 2
	img := image.NewRGBA(image.Rect(0, 0, len(cols)*(w+gap), len(o.methods)*(h+gap)))
	for mi, m := range o.methods {
		for ci, n := range cols {
			px := data.Slice(s, o.prep.Image.Data, n)
			o.prep.Window.Apply(px, px)
			tr := data.Slice(s, o.truth, n)
			pr := data.Slice(s, o.preds[m], n)
			x0, y0 := ci*(w+gap), mi*(h+gap)
			for y := 0; y < h; y++ {
				for x := 0; x < w; x++ {
					i := y*w + x
					g := uint8(255 * px[i])
					c := color.RGBA{g, g, g, 255}
					if pr[i] == o.id {
						c = color.RGBA{uint8(0.5*float64(g) + 127), uint8(0.5 * float64(g)), uint8(0.5 * float64(g)), 255}
					}
					if tr[i] == o.id && (y == 0 || x == 0 || y == h-1 || x == w-1 || tr[i-w] != o.id || tr[i+w] != o.id || tr[i-1] != o.id || tr[i+1] != o.id) {
						c = color.RGBA{0, 230, 0, 255}
					}
					if n == o.ann && (y == 0 || x == 0 || y == h-1 || x == w-1) {
						c = color.RGBA{255, 220, 0, 255}
					}
					img.Set(x0+x, y0+y, c)
				}
			}
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b.Bytes())
}
