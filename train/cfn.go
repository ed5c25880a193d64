package train

import (
	"fmt"
	"iter"
	"math"
	"time"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/data/tensors"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/runs"
	"github.com/sli2vol/sli2vol/torchx"
)

// Options are a correspondence-flow training run's inputs beyond the config.
type Options struct {
	RunOptions
	Data      *data.Dataset
	PseudoDir string // pseudo-labels (required in mode sli2vol+)
	// wrapStep (tests) wraps the training step, e.g. to feed it a corrupt batch.
	wrapStep func(cfnStep) cfnStep
}

// cfnStep is one optimisation step on a batch (Stepper.Step, or a test's wrapper of it).
type cfnStep func(data.Batch) (loss float64, err error)

// NewOptimizer builds the configured optimizer and learning-rate schedule over params.
func NewOptimizer(t configs.Train, params []torchx.Tensor, totalSteps int) (*torchx.Optimizer, torchx.Schedule) {
	var opt *torchx.Optimizer
	if t.Optimizer == configs.OptimizerSGD {
		opt = torchx.NewSGD(params, torchx.SGDOpts{LR: t.LR, Momentum: t.Momentum, WeightDecay: t.WeightDecay, Nesterov: t.Nesterov})
	} else {
		opt = torchx.NewAdamW(params, torchx.AdamWOpts{LR: t.LR, WeightDecay: t.WeightDecay})
	}
	var sch torchx.Schedule = torchx.ConstantLR{Base: t.LR}
	switch t.Schedule {
	case configs.ScheduleStep:
		sch = torchx.StepLR{Base: t.LR, StepSize: t.StepSize, Gamma: t.Gamma}
	case configs.SchedulePoly:
		sch = torchx.PolyLR{Base: t.LR, Total: totalSteps, Power: t.PolyPower}
	}
	return opt, sch
}

// TrainCFN trains Sli2Vol (mode sli2vol) or Sli2Vol+'s OEG-CFN (mode sli2vol+): pairs of
// slices, the affinity of their features reconstructs slice j+1 from slice j, an L1-type loss
// against the real slice j+1. Checkpoints every train.checkpoint_every steps and at the end;
// --resume continues exactly.
func TrainCFN(c *configs.Config, o Options) (Result, error) {
	defer torchx.PinThread()()
	if c.Model.Mode.UsesPL() && o.PseudoDir == "" {
		return Result{}, fmt.Errorf("train: mode %s needs pseudo-labels (--pseudo DIR, from sli2vol pseudo-label)", c.Model.Mode)
	}
	pseudo := o.PseudoDir
	if !c.Model.Mode.UsesPL() {
		pseudo = ""
	}
	r, err := newRun(o.RunOptions, "train")
	if err != nil {
		return Result{}, err
	}
	sampler, err := newPairSampler(c, o.Data, pseudo, r)
	if err = r.agree(err); err != nil {
		return Result{}, err
	}
	shard := r.shard(c.Dist.DropLast)
	perEpoch := sampler.NumBatches(0, c.Train.BatchSize, shard)
	p := plan{Title: "train " + string(c.Model.Mode), Total: perEpoch * c.Train.Epochs, PerEpoch: perEpoch,
		ShardedEpochs: true, CheckpointEvery: c.Train.CheckpointEvery}
	model, opt, sched, err := newCFNTraining(c, o.Device, p.Total)
	if err = r.agree(err); err != nil {
		return Result{}, err
	}
	defer opt.Close()
	defer r.close()
	r.scale = trainingScale(c, o.Data, r)
	if err := r.start(c, model, opt, p); err != nil {
		return Result{}, err
	}
	stepper := &Stepper{Cfg: c, Model: model, Opt: opt, Device: o.Device, Sync: r.sync()}
	var step cfnStep = stepper.Step
	if o.wrapStep != nil {
		step = o.wrapStep(step)
	}
	for pos, batch := range pairBatches(sampler, shard, r.pos, c.Train.Epochs, c.Train.BatchSize) {
		lr := sched.LR(pos.Step)
		opt.SetLR(lr)
		loss, err := step(batch)
		if !r.record(pos, stepLog{Loss: loss, LR: lr, Samples: batch.Size, Unit: "samples"}, err) {
			break
		}
	}
	return r.finish()
}

// trainingScale measures the in-plane scale the run trains at (infer.spacing training reads
// it back). Training does not depend on it: a dataset whose spacing cannot be used (rank 0
// says why) trains all the same, without the record.
func trainingScale(c *configs.Config, ds *data.Dataset, r *run) *runs.Scale {
	if !r.rank0() || ds == nil || (r.Resume && runs.Has(r.Dir, runs.ScaleFile)) {
		return nil // a resumed run keeps the scale it started with
	}
	s, err := runs.MeasureScale(c, ds.Split("train"))
	if err != nil {
		if r.Log != nil {
			fmt.Fprintf(r.Log, "train: %s not written (infer.spacing training will refuse this run): %v\n", runs.ScaleFile, err)
		}
		return nil
	}
	return &s
}

// newCFNTraining builds the seeded network on device in training mode, its optimizer and
// its learning-rate schedule.
func newCFNTraining(c *configs.Config, device string, total int) (*models.CFN, *torchx.Optimizer, torchx.Schedule, error) {
	var model *models.CFN
	var opt *torchx.Optimizer
	var sched torchx.Schedule
	var err error
	tryErr := torchx.Try(func() {
		torchx.ManualSeed(uint64(c.Seed))
		if model, err = runs.NewCFN(c.Model); err != nil {
			return
		}
		models.To(model, device)
		if c.Train.ChannelsLast {
			models.ToChannelsLast(model)
		}
		torchx.SetCUDNNBenchmark(c.Train.CUDNNBenchmark)
		models.SetTraining(model, true)
		opt, sched = NewOptimizer(c.Train, models.Parameters(model), total)
	})
	if tryErr != nil {
		return nil, nil, nil, fmt.Errorf("train: building the model on %s: %w", device, tryErr)
	}
	return model, opt, sched, err
}

// newPairSampler opens the training volumes (and pseudo-labels) and samples their pairs,
// prepared ahead by data.workers. With a cache, rank 0 makes it first, the others waiting
// however long that takes (dist.Group.First); then every rank opens it (on a shared file
// system, finding it complete).
func newPairSampler(c *configs.Config, ds *data.Dataset, pseudo string, r *run) (*data.PairSampler, error) {
	if c.Data.Cache != "" && r.Group != nil {
		if err := r.Group.First(func() error {
			_, err := PrepareCache(c, ds, pseudo, false, r.Log)
			return err
		}, time.Second); err != nil {
			return nil, err
		}
	}
	vols, err := LoadTrainVolumes(c, ds, pseudo, r.Log)
	if err != nil {
		return nil, err
	}
	s, err := data.NewPairSampler(vols, c.PairSettings())
	if err != nil {
		return nil, err
	}
	s.Ahead = c.Data.Ahead()
	return s, nil
}

// pairBatches yields the run's remaining batches (this rank's shard) epoch by epoch from
// position from, each with the position of the step it feeds.
func pairBatches(s *data.PairSampler, sh data.Shard, from runs.Progress, epochs, size int) iter.Seq2[runs.Progress, data.Batch] {
	return func(yield func(runs.Progress, data.Batch) bool) {
		step := from.Step
		for e := from.Epoch; e < epochs; e++ {
			first := 0
			if e == from.Epoch {
				first = from.Batch
			}
			for b, batch := range s.Batches(e, size, first, sh) {
				if !yield(runs.Progress{Epoch: e, Batch: b, Step: step}, batch) {
					return
				}
				step++
			}
		}
	}
}

// Stepper is one optimisation step of the correspondence flow — the trainer's inner loop,
// shared with the benchmarks so that they time exactly what training runs.
type Stepper struct {
	Cfg    *configs.Config
	Model  *models.CFN
	Opt    *torchx.Optimizer
	Device string
	Sync   Sync // data-parallel training (dist.DDP); nil in one process
}

// Sync is data-parallel training's part in a step, as DistributedDataParallel does it
// (dist.DDP): rank 0's buffers before the forward pass, gradients averaged over the ranks
// during the backward pass, and the loss averaged so that every rank takes the same
// decision on a non-finite one.
type Sync interface {
	BeforeForward()
	BeforeBackward()
	AverageLoss(loss float64) float64
}

// Step trains on one batch: slices scaled by data.intensity_scale (and pseudo-labels in mode
// sli2vol+), the reconstruction of slice j+1 from slice j, the configured loss, backward and
// an optimizer step. A non-finite loss is returned without updating the weights.
func (s *Stepper) Step(batch data.Batch) (loss float64, err error) {
	if batch.Err != nil { // a slice could not be read
		return 0, batch.Err
	}
	// Every tensor of the step goes when it ends (torchx.TidyDo), not at the next GC.
	err = torchx.Try(func() { torchx.TidyDo(func() { loss = s.step(batch) }) })
	return loss, err
}

func (s *Stepper) step(batch data.Batch) (loss float64) {
	s.Opt.ZeroGrad()
	// Forward, loss and the queued backward in their own scope, which keeps only the loss's
	// value (detached): the last temporaries and the autograd graph (a few hundred nodes,
	// about half a millisecond to destroy) go while the GPU still runs the backward pass. A
	// GPU idles from the loss read until the host queues the next kernel, so host work after
	// that read is time lost.
	if s.Sync != nil {
		s.Sync.BeforeForward()
	}
	l := torchx.Tidy(func() torchx.Tensor {
		l := s.loss(batch)
		// Backward is queued before the loss is read: on a GPU, reading a value waits for the
		// work before it, and the backward pass should already be in the queue by then.
		if s.Sync != nil {
			s.Sync.BeforeBackward()
		}
		torchx.Backward(l)
		return torchx.Detach(l)
	})
	loss = torchx.Item(l)
	if s.Sync != nil {
		loss = s.Sync.AverageLoss(loss)
	}
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return // no update; the next ZeroGrad clears these gradients
	}
	s.Opt.Step()
	return loss
}

// Forward runs the training forward pass on one batch without gradients or an update: in
// training mode it only moves the batch-norm statistics (test-time re-estimation).
func (s *Stepper) Forward(batch data.Batch) error {
	if batch.Err != nil {
		return batch.Err
	}
	return torchx.Try(func() { torchx.NoGrad(func() { torchx.TidyDo(func() { s.loss(batch) }) }) })
}

// loss is the forward pass and the loss of one batch: slices scaled by
// data.intensity_scale (and pseudo-labels in mode sli2vol+), slice j+1 reconstructed from
// slice j, the configured loss (under autocast with train.amp bf16).
func (s *Stepper) loss(batch data.Batch) torchx.Tensor {
	c := s.Cfg
	p := tensors.FromBatch(batch, s.Device)
	in := func(t torchx.Tensor) torchx.Tensor {
		t = torchx.MulScalar(t, c.Data.IntensityScale)
		if c.Train.ChannelsLast {
			t = torchx.ChannelsLast(t)
		}
		return t
	}
	a, b := in(p.A), in(p.B)
	var pla, plb torchx.Tensor
	if s.Model.UsesPL() {
		pla, plb = in(p.PLA), in(p.PLB)
	}
	var l torchx.Tensor
	forward := func() {
		recon := s.Model.Reconstruct(a, b, pla, plb)
		if c.Train.Loss == configs.LossL1 {
			l = torchx.L1Loss(recon, b, torchx.ReduceMean)
		} else {
			l = torchx.SmoothL1Loss(recon, b, torchx.ReduceMean, 1)
		}
	}
	if c.Train.AMP == configs.AMPBF16 {
		// Forward and loss in mixed precision; backward outside autocast.
		torchx.Autocast(s.Device, torchx.BFloat16, forward)
	} else {
		forward()
	}
	return l
}
