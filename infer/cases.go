package infer

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/internal/progress"
)

// CaseInput is one case of a many-case segmentation: its image and its annotation file.
type CaseInput struct {
	Case       data.Case
	Annotation string
	Out        string
}

// CaseInputs pairs every case of ds with its annotation — annDir/ID.nii.gz (or .nii) when
// annDir is given, else the case's own annotation file — and its output out/ID.nii.gz. A case
// without an annotation, or an output that exists without o.Overwrite, is refused here,
// before any case is propagated.
func CaseInputs(ds *data.Dataset, annDir, out string, o data.WriteOptions) ([]CaseInput, error) {
	if st, err := os.Stat(out); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%s: output folder does not exist", out)
	}
	var in []CaseInput
	for _, c := range ds.Cases {
		ann := c.Annotation
		if annDir != "" {
			ann = ""
			for _, ext := range []string{".nii.gz", ".nii"} {
				if p := filepath.Join(annDir, c.ID+ext); fileExists(p) {
					ann = p
					break
				}
			}
		}
		if ann == "" {
			return nil, fmt.Errorf("case %s (%s): no annotation file (looked for %s)", c.ID, c.Image, filepath.Join(annDir, c.ID+".nii.gz"))
		}
		dst := filepath.Join(out, c.ID+".nii.gz")
		if !o.Overwrite && fileExists(dst) {
			return nil, fmt.Errorf("%s: exists; not overwriting it (use --force)", dst)
		}
		in = append(in, CaseInput{Case: c, Annotation: ann, Out: dst})
	}
	if len(in) == 0 {
		return nil, fmt.Errorf("dataset %s: no case", ds.Root)
	}
	return in, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// loadedCase is a case read and prepared ahead of its propagation.
type loadedCase struct {
	prep *Prepared
	anns []*data.Annotation
	err  error
}

// SegmentCases segments every case: each case's annotated slices (all labelled slices of its
// annotation file) propagated and written to its output on the image's grid. The next case is
// read, normalised and checked while the current one propagates (one case ahead: memory for
// two volumes), and a progress line counts the cases.
func (j *Job) SegmentCases(cases []CaseInput, o data.WriteOptions) error {
	bar := progress.New(j.Log, len(cases), "cases", 5*time.Second)
	defer bar.Finish()
	for i, lc := range data.Ahead(data.Prefetch{Workers: 1, Depth: 1}, 0, len(cases), func(i int) loadedCase {
		return j.loadCase(cases[i], o)
	}) {
		if lc.err != nil {
			return lc.err
		}
		res, err := j.Run(lc.prep, Request{Annotations: lc.anns})
		if err != nil {
			return fmt.Errorf("case %s: %w", cases[i].Case.ID, err)
		}
		w := o
		w.Inputs = append(append([]string(nil), o.Inputs...), cases[i].Annotation)
		if err := data.WriteLabels(cases[i].Out, res.Labels, &lc.prep.Image.Geometry, w); err != nil {
			return err
		}
		bar.Add(1, fmt.Sprintf("%s: slices %d..%d", cases[i].Case.ID, res.First, res.Last))
	}
	return nil
}

// loadCase reads a case's image and annotation and checks them (and its output path).
func (j *Job) loadCase(c CaseInput, o data.WriteOptions) loadedCase {
	img, err := c.Case.LoadImage(j.Cfg.VolumeLimits())
	if err != nil {
		return loadedCase{err: err}
	}
	lab, err := data.LoadLabels(c.Annotation, j.Cfg.VolumeLimits())
	if err != nil {
		return loadedCase{err: err}
	}
	if err := img.SameGrid(&lab.Geometry, 1e-3); err != nil {
		return loadedCase{err: fmt.Errorf("%s: does not lie on the grid of %s: %w", c.Annotation, c.Case.Image, err)}
	}
	p, err := j.Prepare(img)
	if err != nil {
		return loadedCase{err: err}
	}
	anns, err := data.FindAnnotations(lab, p.Slicer)
	if err != nil {
		return loadedCase{err: err}
	}
	w := o
	w.Inputs = append(append([]string(nil), o.Inputs...), c.Annotation)
	if err := data.CheckOutput(c.Out, &img.Geometry, w); err != nil {
		return loadedCase{err: err}
	}
	return loadedCase{prep: p, anns: anns}
}
