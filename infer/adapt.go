package infer

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/models"
)

// Adapter fine-tunes a copy of a network on one volume's own slice pairs before it is
// propagated (test-time adaptation, infer.adapt_steps). train.Adapter is the implementation;
// it lives with the training step it reuses, and the commands hand it to their jobs.
type Adapter interface {
	// Adapt returns an adapted copy of t.Net (t.Net itself unchanged).
	Adapt(ctx context.Context, t AdaptTask) (Network, error)
}

// AdaptTask is one adaptation: a network, the volume it adapts to, and how.
type AdaptTask struct {
	Cfg    *configs.Config // infer.adapt_* and the training settings the step uses
	Device string
	Net    Network
	// Volume's pairs are the training samples, its labels (if any) the pseudo-labels.
	Volume   data.TrainVolume
	Log      io.Writer
	Progress func(done, total int) // after each step; nil: not followed
}

// adaptedRun is Run with test-time adaptation. The adaptation trains what propagation will
// use: for Sli2Vol+ with the propagated estimate each round propagates the request with the
// current network and adapts on that estimate as the pseudo-labels; with estimate model, on
// the Estimator's prediction; Sli2Vol, and Sli2Vol+ with no estimate (its propagation reads
// the slice features alone), adapt once on the image alone — measured on BraTS, adapting a
// Sli2Vol+ run's PL stream that its propagation then does not read cost 15 Dice points. The
// volume is then propagated with the adapted copy, which is freed after.
func (j *Job) adaptedRun(p *Prepared, r Request) (*Result, error) {
	if j.Adapter == nil {
		return nil, fmt.Errorf("infer.adapt_steps is %d (adapt_norm %s) but this command cannot adapt (no adapter)", j.Cfg.Infer.AdaptSteps, j.Cfg.Infer.AdaptNorm)
	}
	if err := j.ensureEstimate(p); err != nil {
		return nil, err
	}
	rounds, plPasses := j.adaptPlan()
	keep := p.KeepAdapted && plPasses == 0 // the adaptation does not depend on the request
	if keep && p.adapted != nil && p.adaptedBy == j {
		return j.runWith(p.adapted, p, r)
	}
	ph := newPhases(r.Progress, plPasses, rounds, j.Cfg.Infer.AdaptSteps, passLength(p, r))
	net := j.Net
	defer func() { j.freeAdapted(net) }()
	for round := 0; round < rounds; round++ {
		pl, err := j.adaptLabels(net, p, r, ph)
		if err != nil {
			return nil, err
		}
		vol := data.MemoryVolume("adapt", p.Image, pl, p.Slicer, p.norm)
		adapted, err := j.Adapter.Adapt(r.Ctx, AdaptTask{Cfg: j.Cfg, Device: j.Device, Net: net, Volume: vol, Log: j.Log, Progress: ph.next()})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.Image.Source, err)
		}
		j.freeAdapted(net)
		net = adapted
	}
	use := net
	if keep {
		j.Release(p)
		p.adapted, p.adaptedBy = net, j
		net = j.Net // kept for the volume's next request: not freed on return
	}
	final := r
	final.Progress = ph.next()
	return j.runWith(use, p, final)
}

// Release frees the adapted network p keeps (Prepared.KeepAdapted); p stays usable.
func (j *Job) Release(p *Prepared) {
	if p == nil || p.adapted == nil {
		return
	}
	p.adaptedBy.freeAdapted(p.adapted)
	p.adapted, p.adaptedBy = nil, nil
}

// adaptPlan is the number of adaptation rounds and of propagation passes that make their
// pseudo-labels: rounds only make sense where each can start from a better estimate than the
// last (Sli2Vol+ with the propagated estimate).
func (j *Job) adaptPlan() (rounds, plPasses int) {
	if j.Propagator().Estimate != configs.EstimatePropagated { // Sli2Vol is always none
		return 1, 0
	}
	return j.Cfg.Infer.AdaptRounds, j.Cfg.Infer.AdaptRounds
}

// adaptLabels are the pseudo-labels a round adapts on: none where propagation feeds none
// (Sli2Vol, estimate none), the Estimator's prediction with estimate model, else the request
// propagated with the current network.
func (j *Job) adaptLabels(net Network, p *Prepared, r Request, ph *phases) (*data.Labels, error) {
	switch {
	case j.Propagator().Estimate == configs.EstimateNone:
		return nil, nil
	case p.estimate != nil:
		return &data.Labels{Geometry: p.Image.Geometry, Data: p.estimate}, nil
	}
	pass := r
	pass.Progress = ph.next()
	res, err := j.runWith(net, p, pass)
	if err != nil {
		return nil, err
	}
	return &data.Labels{Geometry: p.Image.Geometry, Data: res.Labels}, nil
}

// freeAdapted frees net's tensors unless it is the job's own network.
func (j *Job) freeAdapted(net Network) {
	if net == j.Net {
		return
	}
	if m, ok := net.(models.Module); ok {
		models.Free(m)
	}
}

// passLength is the progress total of one propagation of r through p.
func passLength(p *Prepared, r Request) int {
	anns := slices.Clone(r.Annotations)
	slices.SortFunc(anns, func(a, b *data.Annotation) int { return a.Slice - b.Slice })
	if len(anns) == 0 {
		return 0
	}
	return planLength(planChains(anns), p.Slicer.Len())
}

// phases turns the progress of an adapted run's parts (propagation passes in slices,
// adaptation in steps) into one count: each part's callback adds its offset.
type phases struct {
	report      func(done, total int)
	sizes       []int // each part's total, in order
	part, total int   // parts handed out so far; the sum of sizes
}

func newPhases(report func(done, total int), plPasses, rounds, steps, pass int) *phases {
	ph := &phases{report: report}
	for i := 0; i < rounds; i++ {
		if i < plPasses {
			ph.sizes = append(ph.sizes, pass)
		}
		ph.sizes = append(ph.sizes, steps)
	}
	ph.sizes = append(ph.sizes, pass)
	for _, s := range ph.sizes {
		ph.total += s
	}
	return ph
}

// next is the next part's progress callback (nil when nobody follows the progress).
func (ph *phases) next() func(done, total int) {
	start := 0
	for _, s := range ph.sizes[:min(ph.part, len(ph.sizes))] {
		start += s
	}
	ph.part++
	if ph.report == nil {
		return nil
	}
	return func(done, _ int) { ph.report(start+done, ph.total) }
}
