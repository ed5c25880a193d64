package infer

import (
	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
)

// FSSSVolumes is the FS-SS baseline's training set (§4.3 (2)): every case that evaluate
// scores, with its labels known only on the slices evaluate annotates (EvalChoices with the
// same seed), so the baseline gets the annotation Sli2Vol+ gets at test time. Where several
// structures are annotated, each chosen slice is known in full (every structure on it): a
// little more than one mask per structure, in the baseline's favour.
func FSSSVolumes(c *configs.Config, ds *data.Dataset) ([]*data.SegVolume, error) {
	cases, err := EvalCases(ds)
	if err != nil {
		return nil, err
	}
	var out []*data.SegVolume
	for ci, cs := range cases {
		img, lab, err := data.LoadCase(cs, c.VolumeLimits())
		if err != nil {
			return nil, err
		}
		j := &Job{Cfg: c}
		p, err := j.Prepare(img)
		if err != nil {
			return nil, err
		}
		known := map[int]bool{}
		var slices []int
		for _, ch := range EvalChoices(lab, p.Slicer, c.Seed, ci) {
			if !known[ch.Slice] {
				known[ch.Slice] = true
				slices = append(slices, ch.Slice)
			}
		}
		shape := data.SegShape(p.Slicer)
		labels := data.ToSliceOrder(p.Slicer, lab.Data)
		plane := shape[1] * shape[2]
		for i := range labels {
			if !known[i/plane] {
				labels[i] = 0 // never seen by the baseline
			}
		}
		out = append(out, &data.SegVolume{ID: cs.ID, Shape: shape, Image: data.SegImage(img, p.Slicer, p.Window),
			Labels: labels, Slices: slices})
	}
	return out, nil
}
