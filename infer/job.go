package infer

import (
	"fmt"
	"io"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
)

// Job binds a network to a config for segmenting volumes.
type Job struct {
	Cfg    *configs.Config
	Net    Network
	Device string
	Log    io.Writer
	Series string // DICOM SeriesInstanceUID when the image folder holds several series
	// Estimator predicts each test volume for infer.object_estimate "model" (a UNETR++
	// run, e.g. the refinement network).
	Estimator *SegNet
	// Adapter fine-tunes a copy of Net on each volume before propagating it when
	// infer.adapt_steps > 0 (train.Adapter); nil: such a config is refused.
	Adapter Adapter
	// TrainingScale is the mm/px the network was trained at (runs.ReadScale), which
	// infer.spacing training propagates at.
	TrainingScale float64
}

// Prepared is a volume ready for propagation: slicing and test-time window decided.
type Prepared struct {
	Image  *data.Image
	Slicer data.Slicer
	Window data.Window
	norm   *data.Normalizer // the volume's normalisation (adaptation samples it as training does)
	// estimate is the Estimator's prediction of Image, made once per volume.
	estimate []int32
	// KeepAdapted keeps a test-time adaptation that does not depend on the request (all but
	// Sli2Vol+ with the propagated estimate) for the volume's next requests — several
	// structures of one case adapt once — until Job.Release(p) frees it.
	KeepAdapted bool
	adapted     Network
	adaptedBy   *Job
}

// Prepare slices and normalises img as the config says.
func (j *Job) Prepare(img *data.Image) (*Prepared, error) {
	s, err := data.NewSlicer(&img.Geometry, j.Cfg.Data.Axis())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", img.Source, err)
	}
	n, err := data.NewNormalizer(j.Cfg.Data.IntensitySettings(), img.Data)
	if err != nil {
		return nil, err
	}
	return &Prepared{Image: img, Slicer: s, Window: n.Test(), norm: n}, nil
}

// Propagator for this job.
// A Sli2Vol network (model.mode sli2vol) has no pseudo-label input, so the object estimate
// does not apply to it: it propagates with estimate none whatever infer.object_estimate says,
// which lets one evaluate command compare Sli2Vol and Sli2Vol+ under --estimate.
func (j *Job) Propagator() *Propagator { return j.propagatorFor(j.Net) }

// propagatorFor is the job's propagator around net (the job's own, or an adapted copy).
func (j *Job) propagatorFor(net Network) *Propagator {
	est := j.Cfg.Infer.ObjectEstimate
	if !j.Cfg.Model.Mode.UsesPL() {
		est = configs.EstimateNone
	}
	return &Propagator{Model: net, Device: j.Device, Scale: j.Cfg.Data.IntensityScale,
		MinArea: j.Cfg.Infer.MinArea, Estimate: est, Resize: j.Cfg.Infer.Resize, Spacing: j.spacing(),
		NoCoarser:   j.Cfg.Infer.Spacing == configs.SpacingFiner,
		EncodeBatch: j.Cfg.Infer.EncodeBatch, Verify: j.Cfg.Infer.Verification, Log: j.Log}
}

// spacing is the Propagator's working mm/px: 0 (native) unless infer.spacing training.
func (j *Job) spacing() float64 {
	if j.Cfg.Infer.Spacing.FromTraining() {
		return j.TrainingScale
	}
	return 0
}

// Segment propagates ann through a prepared volume.
func (j *Job) Segment(p *Prepared, ann *data.Annotation) (*Result, error) {
	return j.Run(p, Request{Annotations: []*data.Annotation{ann}})
}

// Run propagates a request (one or several annotated slices) through a prepared volume. With
// estimate model, the Estimator's prediction of the volume is made once per volume (without
// an Estimator, the propagator refuses). With infer.adapt_steps > 0 or adapt_norm volume a
// copy of the network is first adapted to the volume (adaptedRun); the job's own network
// never changes.
func (j *Job) Run(p *Prepared, r Request) (*Result, error) {
	if j.Cfg.Infer.Adapts() {
		return j.adaptedRun(p, r)
	}
	if err := j.ensureEstimate(p); err != nil {
		return nil, err
	}
	return j.runWith(j.Net, p, r)
}

// ensureEstimate makes the Estimator's prediction of p once, when estimate model asks for it.
func (j *Job) ensureEstimate(p *Prepared) error {
	if j.Propagator().Estimate != configs.EstimateModel || j.Estimator == nil || p.estimate != nil {
		return nil
	}
	est, err := j.Estimator.PredictImage(p.Image)
	if err != nil {
		return err
	}
	p.estimate = est
	return nil
}

// runWith propagates r through p with net.
func (j *Job) runWith(net Network, p *Prepared, r Request) (*Result, error) {
	if j.Cfg.Infer.Spacing.FromTraining() && !(j.TrainingScale > 0) {
		return nil, fmt.Errorf("infer.spacing %s: no training scale (a run's scale.json) for this network", j.Cfg.Infer.Spacing)
	}
	prop := j.propagatorFor(net)
	if prop.Estimate == configs.EstimateModel {
		prop.EstimateVolume = p.estimate
	}
	return prop.Run(p.Image, p.Slicer, p.Window, r)
}

// SegmentFile is `sli2vol segment`: image and annotation files in, a label file out on the
// image's grid with the annotation's ids. slice < 0: every labelled slice of the annotation
// file is an annotation (see Request); slice ≥ 0: that slice alone.
func (j *Job) SegmentFile(imagePath, annotationPath string, slice int, out string, o data.WriteOptions) (*Result, error) {
	lim := j.Cfg.VolumeLimits()
	var img *data.Image
	var err error
	if j.Series != "" && data.IsDICOMDir(imagePath) {
		img, err = data.LoadDICOMSeries(imagePath, j.Series, lim)
	} else {
		img, err = data.LoadImage(imagePath, lim)
	}
	if err != nil {
		return nil, err
	}
	lab, err := data.LoadLabels(annotationPath, lim)
	if err != nil {
		return nil, err
	}
	if err := img.SameGrid(&lab.Geometry, 1e-3); err != nil {
		return nil, fmt.Errorf("%s: does not lie on the grid of %s: %w", annotationPath, imagePath, err)
	}
	p, err := j.Prepare(img)
	if err != nil {
		return nil, err
	}
	anns, err := findAnnotations(lab, p.Slicer, slice)
	if err != nil {
		return nil, err
	}
	// Refuse a bad output path before the (long) propagation.
	o.Inputs = append(o.Inputs, imagePath, annotationPath)
	if err := data.CheckOutput(out, &img.Geometry, o); err != nil {
		return nil, err
	}
	res, err := j.Run(p, Request{Annotations: anns})
	if err != nil {
		return nil, err
	}
	return res, data.WriteLabels(out, res.Labels, &img.Geometry, o)
}

// findAnnotations is slice's annotation, or with slice < 0 every labelled slice.
func findAnnotations(lab *data.Labels, s data.Slicer, slice int) ([]*data.Annotation, error) {
	if slice < 0 {
		return data.FindAnnotations(lab, s)
	}
	a, err := data.FindAnnotation(lab, s, slice)
	if err != nil {
		return nil, err
	}
	return []*data.Annotation{a}, nil
}
