package infer

import (
	"bytes"
	"encoding/csv"
	"encoding/gob"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/internal/atomicfile"
)

// Method is one segmentation method in an evaluation: a propagating job, a 3D network
// that predicts the whole volume (Seg: the FS-SS baseline), or the copy baseline (both nil).
type Method struct {
	Name string
	// Model and Variant place the method in a results table (WriteResults): the row of the
	// run it comes from ("" for Name itself) and the way it was run, a column each.
	Model   string
	Variant Variant
	Job     *Job
	Seg     *SegNet
}

// Row is one method's result for one structure of one case.
type Row struct {
	Case, Method string
	ID           int32
	Name         string
	Slice        int // the annotated slice (benchmark policy)
	Largest      int // the structure's largest slice
	Dice, HD95   float64
	// Seconds is the method's time for this structure: its propagation, and on a case's
	// first structure what the case shares (an adaptation kept for the case, a UNETR++'s
	// prediction of the volume), so a method's rows sum to its time per case.
	Seconds float64
}

// Evaluation holds the rows and the error-drift curves.
type Evaluation struct {
	Rows     []Row
	Sources  string                        // markdown naming what was scored (runs, their commits and data), for the report
	drift    map[string]map[int][2]float64 // method → |distance| → (sum of slice Dice, count)
	overlays map[string]*overlay           // case → figure of its largest structure
}

// WriteOverlays draws the overlay figures of the cases this process scored into
// dir/overlays (Write does it too; in a distributed evaluation the other ranks call it for
// theirs).
func (ev *Evaluation) WriteOverlays(dir string) error {
	for id, o := range ev.overlays {
		if err := o.PNG(filepath.Join(dir, "overlays", id+".png")); err != nil {
			return fmt.Errorf("overlay %s: %w", id, err)
		}
	}
	return nil
}

// Evaluate runs every method on every labelled case of ds (the test split when it has labelled
// cases, else all labelled cases), each structure propagated from the same benchmark-chosen
// slice for every method (seeded, ±3 around its largest cross-section, paper §4.3).
//
// With ranks, each process scores its share of the cases (each case's choice depends on the
// seed and the case alone) and every process ends with all the rows and drift curves; each
// keeps the overlays of its own cases, which Write draws.
func Evaluate(ds *data.Dataset, base *Job, methods []Method, seed int64, ranks Ranks) (*Evaluation, error) {
	cases, err := EvalCases(ds)
	if err != nil {
		return nil, err
	}
	ev := &Evaluation{drift: map[string]map[int][2]float64{}, overlays: map[string]*overlay{}}
	for ci, c := range cases {
		if !mine(ranks, ci) {
			continue
		}
		if err := ev.evalCase(ds, c, base, methods, seed, ci); err != nil {
			return nil, err
		}
	}
	if ranks != nil {
		if err := ev.gather(ranks, cases); err != nil {
			return nil, fmt.Errorf("evaluate: %w", err)
		}
	}
	return ev, nil
}

// scores is the part of an evaluation that ranks exchange.
type scores struct {
	Rows  []Row
	Drift map[string]map[int][2]float64
}

// gather gives every rank all the rows, in the order of the cases, and the summed drift.
func (ev *Evaluation) gather(ranks Ranks, cases []data.Case) error {
	// gob, not JSON: an HD95 may be infinite (an empty prediction).
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(scores{ev.Rows, ev.drift}); err != nil {
		return err
	}
	b := buf.Bytes()
	parts, err := ranks.AllGatherBytes(b)
	if err != nil {
		return err
	}
	byCase := map[string][]Row{}
	ev.drift = map[string]map[int][2]float64{}
	for _, part := range parts {
		var sc scores
		if err := gob.NewDecoder(bytes.NewReader(part)).Decode(&sc); err != nil {
			return err
		}
		for _, r := range sc.Rows {
			byCase[r.Case] = append(byCase[r.Case], r)
		}
		for m, curve := range sc.Drift {
			if ev.drift[m] == nil {
				ev.drift[m] = map[int][2]float64{}
			}
			for d, a := range curve {
				sum := ev.drift[m][d]
				ev.drift[m][d] = [2]float64{sum[0] + a[0], sum[1] + a[1]}
			}
		}
	}
	ev.Rows = nil
	for _, c := range cases {
		ev.Rows = append(ev.Rows, byCase[c.ID]...)
	}
	return nil
}

// caseRun is one case of an evaluation: its volume prepared for each method and the whole-
// volume predictions of the Seg methods.
type caseRun struct {
	c       data.Case
	img     *data.Image
	prep    map[string]*Prepared // by method
	whole   map[string][]int32   // Seg methods: one prediction per volume
	shared  map[string]float64   // seconds of each Seg method's prediction, booked on the first row
	largest int32                // the structure whose overlay figure is drawn
}

func (ev *Evaluation) evalCase(ds *data.Dataset, c data.Case, base *Job, methods []Method, seed int64, ci int) error {
	img, lab, err := data.LoadCase(c, base.Cfg.VolumeLimits())
	if err != nil {
		return err
	}
	cr := &caseRun{c: c, img: img, prep: map[string]*Prepared{}, whole: map[string][]int32{}, shared: map[string]float64{}, largest: -1}
	for _, m := range methods {
		j := base
		if m.Job != nil {
			j = m.Job
		}
		if cr.prep[m.Name], err = j.Prepare(img); err != nil {
			return err
		}
		cr.prep[m.Name].KeepAdapted = true // the case's structures share an adaptation
		defer j.Release(cr.prep[m.Name])
		if m.Seg != nil {
			t0 := time.Now()
			if cr.whole[m.Name], err = m.Seg.PredictImage(img); err != nil {
				return fmt.Errorf("%s, %s: %w", c.Image, m.Name, err)
			}
			cr.shared[m.Name] = time.Since(t0).Seconds()
		}
	}
	p0 := cr.prep[methods[0].Name]
	choices := EvalChoices(lab, p0.Slicer, seed, ci)
	volume := map[int32]int{}
	for _, v := range lab.Data {
		volume[v]++
	}
	for _, ch := range choices {
		if cr.largest < 0 || volume[ch.ID] > volume[cr.largest] {
			cr.largest = ch.ID
		}
	}
	for _, ch := range choices {
		if err := ev.evalStructure(ds, cr, lab, ch, methods); err != nil {
			return err
		}
	}
	return nil
}

// evalStructure propagates one structure of a case from its chosen slice with every method
// and scores each against the truth.
func (ev *Evaluation) evalStructure(ds *data.Dataset, cr *caseRun, lab *data.Labels, ch data.BenchmarkChoice, methods []Method) error {
	p0 := cr.prep[methods[0].Name]
	truth := only(lab.Data, ch.ID)
	mask := data.Slice(p0.Slicer, truth, ch.Slice)
	ann := &data.Annotation{Slice: ch.Slice, Mask: mask, IDs: []int32{ch.ID}}
	for _, m := range methods {
		var pred []int32
		t0 := time.Now()
		switch {
		case m.Seg != nil:
			pred = only(cr.whole[m.Name], ch.ID)
		case m.Job == nil:
			pred = CopyMask(cr.prep[m.Name], mask)
		default:
			res, err := m.Job.Segment(cr.prep[m.Name], ann)
			if err != nil {
				return fmt.Errorf("%s, %s: %w", cr.c.Image, m.Name, err)
			}
			pred = res.Labels
		}
		ev.Rows = append(ev.Rows, Row{Case: cr.c.ID, Method: m.Name, ID: ch.ID, Name: ds.LabelName(ch.ID),
			Slice: ch.Slice, Largest: ch.Largest, Dice: Dice(pred, truth, ch.ID),
			HD95: HD95(pred, truth, ch.ID, cr.img.Shape, cr.img.Spacing), Seconds: time.Since(t0).Seconds() + cr.shared[m.Name]})
		cr.shared[m.Name] = 0
		ev.addDrift(m.Name, p0.Slicer, pred, truth, ch.ID, ch.Slice)
		if ch.ID == cr.largest {
			o := ev.overlays[cr.c.ID]
			if o == nil {
				o = &overlay{prep: p0, truth: truth, id: ch.ID, ann: ch.Slice, preds: map[string][]int32{}}
				ev.overlays[cr.c.ID] = o
			}
			o.methods = append(o.methods, m.Name)
			o.preds[m.Name] = pred
		}
	}
	return nil
}

// only keeps the voxels labelled id (others 0).
func only(labels []int32, id int32) []int32 {
	out := make([]int32, len(labels))
	for i, v := range labels {
		if v == id {
			out[i] = id
		}
	}
	return out
}

// EvalCases are the cases an evaluation uses: the labelled test cases, or, when the test
// split has none, every labelled case.
func EvalCases(ds *data.Dataset) ([]data.Case, error) {
	var cases []data.Case
	for _, split := range []string{"test", "train"} {
		for _, c := range ds.Split(split) {
			if c.Label != "" {
				cases = append(cases, c)
			}
		}
		if len(cases) > 0 {
			return cases, nil
		}
	}
	return nil, fmt.Errorf("evaluate %s: no case has labels to evaluate against", ds.Root)
}

// EvalChoices is the annotated slice of each structure of evaluation case ci (seeded, ±3
// around its largest cross-section, §4.3). The FS-SS baseline trains on exactly these.
func EvalChoices(lab *data.Labels, s data.Slicer, seed int64, ci int) []data.BenchmarkChoice {
	r := rand.New(rand.NewSource(seed*7919 + int64(ci)))
	return data.BenchmarkAnnotations(lab, s, r, 3)
}

// addDrift accumulates per-slice Dice by distance from the annotated slice, over slices
// where the structure is in the truth or the prediction.
func (ev *Evaluation) addDrift(method string, s data.Slicer, pred, truth []int32, id int32, ann int) {
	if ev.drift[method] == nil {
		ev.drift[method] = map[int][2]float64{}
	}
	for n := 0; n < s.Len(); n++ {
		inter, a, b := overlap(data.Slice(s, pred, n), data.Slice(s, truth, n), id)
		if a+b == 0 {
			continue
		}
		d := n - ann
		if d < 0 {
			d = -d
		}
		acc := ev.drift[method][d]
		acc[0] += 2 * float64(inter) / float64(a+b)
		acc[1]++
		ev.drift[method][d] = acc
	}
}

func meanStd(v []float64) (float64, float64) {
	var s, n float64
	for _, x := range v {
		if !math.IsNaN(x) {
			s += x
			n++
		}
	}
	if n == 0 {
		return math.NaN(), math.NaN()
	}
	m := s / n
	var q float64
	for _, x := range v {
		if !math.IsNaN(x) {
			q += (x - m) * (x - m)
		}
	}
	return m, math.Sqrt(q / n)
}

// Table is mean ± std Dice (×100) per structure (rows) and method (columns), as the
// paper's Table 2, with the mean over structures last.
func (ev *Evaluation) Table(methods []string) string {
	structs := map[string]bool{}
	for _, r := range ev.Rows {
		structs[r.Name] = true
	}
	names := make([]string, 0, len(structs))
	for n := range structs {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("| structure | " + strings.Join(methods, " | ") + " |\n|---|" + strings.Repeat("---|", len(methods)) + "\n")
	for _, n := range names {
		b.WriteString("| " + n)
		for _, m := range methods {
			var v []float64
			for _, r := range ev.Rows {
				if r.Name == n && r.Method == m {
					v = append(v, 100*r.Dice)
				}
			}
			mu, sd := meanStd(v)
			fmt.Fprintf(&b, " | %.1f ± %.1f", mu, sd)
		}
		b.WriteString(" |\n")
	}
	b.WriteString("| **mean**")
	for _, m := range methods {
		fmt.Fprintf(&b, " | **%.1f**", ev.structureMean(m))
	}
	b.WriteString(" |\n")
	return b.String()
}

// MeanDice is a method's mean Dice over all rows.
func (ev *Evaluation) MeanDice(method string) float64 {
	return ev.rowMean(method, func(r Row) float64 { return r.Dice })
}

// meanHD95 is a method's mean HD95 over its rows (those with one), as report.md gives it.
func (ev *Evaluation) meanHD95(method string) float64 {
	return ev.rowMean(method, func(r Row) float64 { return r.HD95 })
}

// rowMean is the mean of f over a method's rows, NaNs left out.
func (ev *Evaluation) rowMean(method string, f func(Row) float64) float64 {
	var v []float64
	for _, r := range ev.Rows {
		if r.Method == method {
			v = append(v, f(r))
		}
	}
	m, _ := meanStd(v)
	return m
}

// Write stores report.md, results.csv and drift.csv in dir.
func (ev *Evaluation) Write(dir string, methods []string, title string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := ev.WriteOverlays(dir); err != nil {
		return err
	}
	var rb strings.Builder
	w := csv.NewWriter(&rb)
	w.Write([]string{"case", "method", "label", "structure", "annotated_slice", "largest_slice", "dice", "hd95_mm"})
	for _, r := range ev.Rows {
		w.Write([]string{r.Case, r.Method, fmt.Sprint(r.ID), r.Name, fmt.Sprint(r.Slice), fmt.Sprint(r.Largest),
			fmt.Sprintf("%.4f", r.Dice), fmt.Sprintf("%.2f", r.HD95)})
	}
	w.Flush()
	if err := atomicfile.WriteFile(filepath.Join(dir, "results.csv"), []byte(rb.String())); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "times.csv"), ev.timesCSV(methods)); err != nil {
		return err
	}
	var db strings.Builder
	dw := csv.NewWriter(&db)
	dw.Write([]string{"method", "distance_slices", "mean_dice", "slices"})
	for _, m := range methods {
		var ds []int
		for d := range ev.drift[m] {
			ds = append(ds, d)
		}
		sort.Ints(ds)
		for _, d := range ds {
			a := ev.drift[m][d]
			dw.Write([]string{m, fmt.Sprint(d), fmt.Sprintf("%.4f", a[0]/a[1]), fmt.Sprint(int(a[1]))})
		}
	}
	dw.Flush()
	if err := atomicfile.WriteFile(filepath.Join(dir, "drift.csv"), []byte(db.String())); err != nil {
		return err
	}
	if err := ev.DriftPNG(filepath.Join(dir, "drift.png"), methods); err != nil {
		return fmt.Errorf("drift plot: %w", err)
	}
	var md strings.Builder
	fmt.Fprintf(&md, "# %s\n\nDice ×100, mean ± std over cases; each structure is propagated from one slice chosen\n"+
		"at random within ±3 of its largest cross-section (seeded; the same slice for every method).\n\n", title)
	md.WriteString(ev.Table(methods))
	md.WriteString("\nHD95 (mm), mean over cases:\n\n| method | HD95 |\n|---|---|\n")
	for _, m := range methods {
		fmt.Fprintf(&md, "| %s | %.1f |\n", m, ev.meanHD95(m))
	}
	md.WriteString("\nPer case and structure: `results.csv`; seconds per case and method: `times.csv` (apart, as " +
		"it varies from run to run while everything here is reproducible). Dice against distance from the annotated slice (error drift): " +
		"`drift.csv`, `drift.png`. Overlays of each case's largest structure (rows: " + strings.Join(methods, ", ") +
		"; columns: its ends, the annotated slice framed yellow, ±5, ±10; truth outlined green, prediction red): " +
		"`overlays/`.\n\n![drift](drift.png)\n")
	md.WriteString(ev.Sources)
	return atomicfile.WriteFile(filepath.Join(dir, "report.md"), []byte(md.String()))
}

// timesCSV is each method's seconds per case (its rows' sum: every structure's propagation
// and what the case's structures share, such as an adaptation; loading excluded), cases in
// the order scored, and each method's mean over cases.
func (ev *Evaluation) timesCSV(methods []string) []byte {
	var b strings.Builder
	w := csv.NewWriter(&b)
	w.Write([]string{"method", "case", "seconds"})
	for _, m := range methods {
		var order []string
		secs := map[string]float64{}
		for _, r := range ev.Rows {
			if r.Method != m {
				continue
			}
			if _, ok := secs[r.Case]; !ok {
				order = append(order, r.Case)
			}
			secs[r.Case] += r.Seconds
		}
		total := 0.0
		for _, c := range order {
			w.Write([]string{m, c, fmt.Sprintf("%.3f", secs[c])})
			total += secs[c]
		}
		if len(order) > 0 {
			w.Write([]string{m, "mean", fmt.Sprintf("%.3f", total/float64(len(order)))})
		}
	}
	w.Flush()
	return []byte(b.String())
}
