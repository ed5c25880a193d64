package infer

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/internal/atomicfile"
)

// CaseAnnotations returns the annotation(s) a training case is propagated from (§3.2 "PLs
// Generation"): its annotation file; or the given slice of its label file; or, for a fully
// labelled case, the benchmark policy — per structure, a seeded pick within ±3 of its largest
// slice (each structure then propagates separately).
func (j *Job) CaseAnnotations(c data.Case, p *Prepared, r *rand.Rand) ([]*data.Annotation, error) {
	lim := j.Cfg.VolumeLimits()
	var src string
	switch {
	case c.Annotation != "":
		src = c.Annotation
	case c.Label != "":
		src = c.Label
	default:
		return nil, fmt.Errorf("%s: case %s has neither an annotation nor a label file", c.Image, c.ID)
	}
	lab, err := data.LoadLabels(src, lim)
	if err != nil {
		return nil, err
	}
	if err := p.Image.SameGrid(&lab.Geometry, 1e-3); err != nil {
		return nil, fmt.Errorf("%s: does not lie on the grid of %s: %w", src, c.Image, err)
	}
	if c.Annotation != "" || c.Slice >= 0 {
		a, err := data.FindAnnotation(lab, p.Slicer, c.Slice)
		if err != nil {
			return nil, err
		}
		return []*data.Annotation{a}, nil
	}
	var out []*data.Annotation
	for _, ch := range data.BenchmarkAnnotations(lab, p.Slicer, r, 3) {
		m := data.Slice(p.Slicer, lab.Data, ch.Slice)
		for i, v := range m {
			if v != ch.ID {
				m[i] = 0
			}
		}
		out = append(out, &data.Annotation{Slice: ch.Slice, Mask: m, IDs: []int32{ch.ID}})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no labelled voxel to annotate from", src)
	}
	return out, nil
}

// PseudoLabels writes, for every training case, the propagation of its annotation(s) as
// OUT/labelsTr/ID.nii.gz on the image's grid, and OUT/annotations.json recording the slices
// (written last: its presence marks a complete set). With ranks, each process propagates its
// share of the cases; the others' annotation draws are replayed (skipCase), so the choices are
// those of a single process.
func (j *Job) PseudoLabels(ds *data.Dataset, out string, o data.WriteOptions, ranks Ranks) error {
	if err := os.MkdirAll(filepath.Join(out, "labelsTr"), 0o755); err != nil {
		return fmt.Errorf("pseudo-label: %w", err)
	}
	r := rand.New(rand.NewSource(j.Cfg.Seed))
	record := map[string][]map[string]int{}
	for i, c := range ds.Split("train") {
		if !mine(ranks, i) {
			if err := j.skipCase(c, r); err != nil {
				return err
			}
			continue
		}
		img, p, anns, err := j.caseAnnotations(c, r)
		if err != nil {
			return err
		}
		for _, a := range anns {
			for _, id := range a.IDs {
				record[c.ID] = append(record[c.ID], map[string]int{"id": int(id), "slice": a.Slice})
			}
		}
		if err := j.pseudoLabelCase(c, img, p, anns, out, o); err != nil {
			return err
		}
	}
	if ranks != nil {
		var err error
		if record, err = gatherRecords(ranks, record); err != nil {
			return fmt.Errorf("pseudo-label: %w", err)
		}
	}
	if !leader(ranks) {
		return nil
	}
	b, _ := json.MarshalIndent(record, "", "  ")
	return atomicfile.WriteFile(filepath.Join(out, "annotations.json"), append(b, '\n'))
}

// skipCase draws from r what CaseAnnotations draws for a case another rank propagates, so
// that the later cases' choices stay those of a single process. Only fully labelled cases
// draw (the benchmark policy), from their labels and the slicing of their grid: the image is
// not read.
func (j *Job) skipCase(c data.Case, r *rand.Rand) error {
	if c.Annotation != "" || c.Slice >= 0 || c.Label == "" {
		return nil
	}
	lab, err := data.LoadLabels(c.Label, j.Cfg.VolumeLimits())
	if err != nil {
		return err
	}
	s, err := data.NewSlicer(&lab.Geometry, j.Cfg.Data.Axis())
	if err != nil {
		return fmt.Errorf("%s: %w", c.Label, err)
	}
	data.BenchmarkAnnotations(lab, s, r, 3)
	return nil
}

// caseAnnotations loads a training case's image and draws its annotation(s).
func (j *Job) caseAnnotations(c data.Case, r *rand.Rand) (*data.Image, *Prepared, []*data.Annotation, error) {
	img, err := c.LoadImage(j.Cfg.VolumeLimits())
	if err != nil {
		return nil, nil, nil, err
	}
	p, err := j.Prepare(img)
	if err != nil {
		return nil, nil, nil, err
	}
	anns, err := j.CaseAnnotations(c, p, r)
	return img, p, anns, err
}

// pseudoLabelCase propagates a case's annotations (the first structure wins a voxel claimed
// twice) and writes the result.
func (j *Job) pseudoLabelCase(c data.Case, img *data.Image, p *Prepared, anns []*data.Annotation, out string, o data.WriteOptions) error {
	p.KeepAdapted = true // the annotations share an adaptation where it does not depend on them
	defer j.Release(p)
	merged := make([]int32, img.NumVoxels())
	for _, a := range anns {
		res, err := j.Segment(p, a)
		if err != nil {
			return fmt.Errorf("%s: %w", c.Image, err)
		}
		for i, v := range res.Labels {
			if v != 0 && merged[i] == 0 {
				merged[i] = v
			}
		}
	}
	dst := filepath.Join(out, "labelsTr", c.ID+".nii.gz")
	oc := o
	oc.Inputs = append(append([]string(nil), o.Inputs...), c.Image, c.Label, c.Annotation)
	if err := data.WriteLabels(dst, merged, &img.Geometry, oc); err != nil {
		return err
	}
	if j.Log != nil {
		fmt.Fprintf(j.Log, "pseudo-labels %s → %s\n", c.ID, dst)
	}
	return nil
}

// gatherRecords merges every rank's annotation records (each case is one rank's).
func gatherRecords(ranks Ranks, mine map[string][]map[string]int) (map[string][]map[string]int, error) {
	b, _ := json.Marshal(mine)
	all, err := ranks.AllGatherBytes(b)
	if err != nil {
		return nil, err
	}
	out := map[string][]map[string]int{}
	for _, part := range all {
		var m map[string][]map[string]int
		if err := json.Unmarshal(part, &m); err != nil {
			return nil, err
		}
		for k, v := range m {
			out[k] = v
		}
	}
	return out, nil
}
