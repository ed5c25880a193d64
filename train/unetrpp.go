package train

import (
	"cmp"
	"fmt"
	"io"
	"iter"
	"math"
	"math/rand"
	"slices"

	"github.com/sli2vol/sli2vol/cache"
	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/data/tensors"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/runs"
	"github.com/sli2vol/sli2vol/torchx"
)

// SegOptions are a UNETR++ training run's inputs beyond the config.
type SegOptions struct {
	RunOptions
	Vols  []*data.SegVolume // labels as label ids; mapped to classes here
	Title string            // progress bar ("refine", "fs-ss")
}

// SegVolumesFromPL gives the training split with each case's pseudo-labels as labels (every
// voxel known): what the refinement network trains on. With data.cache, from the cache
// (made first when missing), read patch by patch; with data.max_resident_gb, decoded on
// demand within it; otherwise read whole.
func SegVolumesFromPL(c *configs.Config, ds *data.Dataset, pseudoDir string, log io.Writer) ([]*data.SegVolume, error) {
	if c.Data.Cache != "" {
		cc, err := PrepareCache(c, ds, pseudoDir, false, log)
		if err != nil {
			return nil, err
		}
		return cc.SegVolumes()
	}
	srcs, err := TrainSources(ds, pseudoDir)
	if err != nil {
		return nil, err
	}
	if c.Data.MaxResidentGB > 0 {
		vols, _, err := cache.NewResidentSeg(srcs, CacheSettings(c), int64(c.Data.MaxResidentGB*1e9))
		return vols, err
	}
	out := make([]*data.SegVolume, len(srcs))
	for i, src := range srcs {
		v, err := loadVolume(c, src)
		if err != nil {
			return nil, err
		}
		out[i] = &data.SegVolume{ID: v.id, Shape: data.SegShape(v.sl),
			Image: data.SegImage(v.img, v.sl, v.norm.Test()), Labels: data.ToSliceOrder(v.sl, v.pl.Data)}
	}
	return out, nil
}

// TrainUNETRPP trains UNETR++ nnU-Net style (§4.2): SGD with Nesterov momentum, poly
// learning rate per epoch, Dice + cross-entropy with deep supervision, random patches with
// foreground oversampling, gradient clipping; epochs of a fixed number of batches.
// Checkpoints every unetr.checkpoint_every steps and at the end; --resume continues exactly
// (each step's sampling and dropout are seeded from the config seed and the step number).
func TrainUNETRPP(c *configs.Config, o SegOptions) (Result, error) {
	defer torchx.PinThread()()
	u := c.UNETR
	r, err := newRun(o.RunOptions, "unetr")
	if err != nil {
		return Result{}, err
	}
	sampler, classes, err := newPatchSampler(c, o.Vols, o.Dir, o.Resume)
	if err = r.agree(err); err != nil {
		return Result{}, err
	}
	model, opt, err := newUNETRTraining(c, o.Device, len(classes.IDs))
	if err = r.agree(err); err != nil {
		return Result{}, err
	}
	defer opt.Close()
	defer r.close()
	p := plan{Title: cmp.Or(o.Title, "unetr++"), Total: u.Epochs * u.IterationsPerEpoch, PerEpoch: u.IterationsPerEpoch,
		CheckpointEvery: u.CheckpointEvery}
	if err := r.start(c, model, opt, p); err != nil {
		return Result{}, err
	}
	if r.rank0() {
		err = runs.WriteClasses(runs.Path(o.Dir, runs.ClassesFile), classes)
	}
	if err = r.agree(err); err != nil {
		return Result{}, err
	}
	step := &SegStepper{Cfg: c, Model: model, Opt: opt, Device: o.Device, Sync: r.sync()}
	for pos, global := range patchBatches(r, sampler, c, u.BatchSize*r.world()) {
		torchx.ManualSeed(stepSeed(c.Seed, pos.Step)) // the step's dropout
		lr := u.LR * math.Pow(1-float64(pos.Epoch)/float64(u.Epochs), u.PolyPower)
		opt.SetLR(lr)
		// Every rank draws the step's global batch and trains on its part of it.
		var loss float64
		if err = global.Err; err == nil {
			loss, err = step.Step(global.Batch.Part(r.rank(), r.world()))
		}
		if !r.record(pos, stepLog{Loss: loss, LR: lr, Samples: u.BatchSize, Unit: "patches"}, err) {
			break
		}
	}
	return r.finish()
}

// stepSeed seeds step's patch sampling, and libtorch's generator for its dropout, from the
// config seed and the step number alone, so a resumed run draws what an uninterrupted one
// would.
func stepSeed(seed int64, step int) uint64 { return uint64(seed)*1_000_003 + uint64(step) }

// sampled is a step's batch, or why it could not be read.
type sampled struct {
	Batch *data.PatchBatch
	Err   error
}

// patchBatches yields the run's remaining steps with their global batches of size patches,
// drawn ahead by data.workers (each from its step's seed alone, so the order of drawing
// does not matter).
func patchBatches(r *run, s *data.PatchSampler, c *configs.Config, size int) iter.Seq2[runs.Progress, sampled] {
	return func(yield func(runs.Progress, sampled) bool) {
		draw := func(step int) sampled {
			b, err := s.Sample(size, rand.New(rand.NewSource(int64(stepSeed(c.Seed, step)))))
			return sampled{b, err}
		}
		batches := data.Ahead(c.Data.Ahead(), r.pos.Step, r.plan.Total, draw)
		next, stop := iter.Pull2(batches)
		defer stop()
		for pos := range r.steps() {
			_, b, ok := next()
			if !ok || !yield(pos, b) {
				return
			}
		}
	}
}

// newPatchSampler maps the volumes' labels to classes and samples patches of them.
func newPatchSampler(c *configs.Config, in []*data.SegVolume, dir string, resume bool) (*data.PatchSampler, data.ClassMap, error) {
	vols, classes, err := classVolumes(in, dir, resume)
	if err != nil {
		return nil, classes, err
	}
	u := c.UNETR
	s, err := data.NewPatchSampler(vols, u.PatchSize, u.ForegroundFraction, u.Mirror)
	if err != nil {
		return nil, classes, fmt.Errorf("unetr: %w", err)
	}
	return s, classes, nil
}

// classVolumes maps the volumes' label ids to classes (background first); a resumed run
// must see the ids it was trained on (dir's classes.json).
func classVolumes(in []*data.SegVolume, dir string, resume bool) ([]*data.SegVolume, data.ClassMap, error) {
	labels := make([][]int32, len(in))
	for i, v := range in {
		labels[i] = v.IDs()
	}
	classes := data.NewClassMap(labels...)
	if len(classes.IDs) < 2 {
		return nil, classes, fmt.Errorf("unetr: the training labels hold no foreground voxel")
	}
	if resume {
		if prev, err := runs.ReadClasses(dir); err == nil && !slices.Equal(prev.IDs, classes.IDs) {
			return nil, classes, fmt.Errorf("unetr: --resume: the run was trained on label ids %v, the data now has %v", prev.IDs, classes.IDs)
		}
	}
	vols := make([]*data.SegVolume, len(in))
	for i, v := range in {
		var err error
		if vols[i], err = v.WithClasses(classes); err != nil {
			return nil, classes, fmt.Errorf("unetr: %s: %w", v.ID, err)
		}
	}
	return vols, classes, nil
}

// newUNETRTraining builds the seeded network on device in training mode and its optimizer.
func newUNETRTraining(c *configs.Config, device string, classes int) (*models.UNETRPP, *torchx.Optimizer, error) {
	var model *models.UNETRPP
	var opt *torchx.Optimizer
	var err error
	tryErr := torchx.Try(func() {
		torchx.ManualSeed(uint64(c.Seed))
		if model, err = models.NewUNETRPP(runs.UNETRConfig(c.UNETR, 1, classes)); err != nil {
			return
		}
		models.To(model, device)
		models.SetTraining(model, true)
		opt = NewSegOptimizer(c.UNETR, models.Parameters(model))
	})
	if tryErr != nil {
		return nil, nil, fmt.Errorf("unetr: building the model on %s: %w", device, tryErr)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("unetr: %w", err)
	}
	return model, opt, nil
}

// NewSegOptimizer builds unetr.optimizer (SGD with momentum/Nesterov, or AdamW) over params.
func NewSegOptimizer(u configs.UNETR, params []torchx.Tensor) *torchx.Optimizer {
	if u.Optimizer == configs.OptimizerAdamW {
		return torchx.NewAdamW(params, torchx.AdamWOpts{LR: u.LR, WeightDecay: u.WeightDecay})
	}
	return torchx.NewSGD(params, torchx.SGDOpts{LR: u.LR, Momentum: u.Momentum, WeightDecay: u.WeightDecay, Nesterov: u.Nesterov})
}

// SegStepper is one UNETR++ optimisation step, shared with the benchmarks.
type SegStepper struct {
	Cfg    *configs.Config
	Model  *models.UNETRPP
	Opt    *torchx.Optimizer
	Device string
	Sync   Sync            // data-parallel training (dist.DDP); nil in one process
	params []torchx.Tensor // for clipping, listed once
}

// DeepSupervisionWeights are nnU-Net's 1, ½, ¼ scaled to sum to 1, for the given number of
// outputs (finest first).
func DeepSupervisionWeights(n int) []float64 {
	w := make([]float64, n)
	var sum float64
	for i := range w {
		w[i] = 1 / math.Pow(2, float64(i))
		sum += w[i]
	}
	for i := range w {
		w[i] /= sum
	}
	return w
}

// Step trains on one batch: the weighted Dice + CE at each output scale (targets picked by
// nearest neighbour at the output's grid), backward, gradient clipping, an optimizer step.
// A non-finite loss is returned without updating the weights.
func (s *SegStepper) Step(b *data.PatchBatch) (loss float64, err error) {
	mc := s.Model.Config
	// Targets per output: full resolution, then the stage-1 and stage-2 grids.
	targets := []*data.PatchBatch{b}
	if mc.DeepSupervision {
		f0, f1 := mc.EmbedPatch, mc.EmbedPatch
		for a := range f1 {
			f1[a] *= 2
		}
		targets = append(targets, b.Downsample(f0), b.Downsample(f1))
	}
	// Every tensor of the step goes when it ends (torchx.TidyDo), not at the next GC.
	err = torchx.Try(func() { torchx.TidyDo(func() { loss = s.step(b, targets) }) })
	return loss, err
}

func (s *SegStepper) step(b *data.PatchBatch, targets []*data.PatchBatch) (loss float64) {
	u := s.Cfg.UNETR
	s.Opt.ZeroGrad()
	if s.Sync != nil {
		s.Sync.BeforeForward()
	}
	// Forward, loss and the queued backward in their own scope, which keeps only the loss's
	// value: temporaries and graph go while the GPU still runs the backward (Stepper.step).
	total := torchx.Tidy(func() torchx.Tensor {
		p := tensors.FromPatchBatch(b, s.Device)
		outs := s.Model.Forward(p.Image, true)
		w := DeepSupervisionWeights(len(outs))
		var total torchx.Tensor
		for i, out := range outs {
			t := p
			var l torchx.Tensor
			if i > 0 {
				t = tensors.FromPatchBatch(targets[i], s.Device)
			}
			switch {
			case i == 0 || anyKnown(targets[i]):
				l = torchx.MulScalar(DiceCELoss(out, t.Labels, t.Known), w[i])
			case s.Sync != nil:
				// FS-SS: this scale dropped every known voxel. Data-parallel training still
				// needs a (zero) gradient for its head on every rank: the Reducer averages
				// every parameter's gradient.
				l = torchx.MulScalar(torchx.Sum(out, false), 0)
			default:
				continue // FS-SS: this scale dropped every known voxel
			}
			if total.T == nil {
				total = l
			} else {
				total = torchx.Add(total, l)
			}
		}
		// The backward pass is queued before the loss is read.
		if s.Sync != nil {
			s.Sync.BeforeBackward()
		}
		torchx.Backward(total)
		return torchx.Detach(total)
	})
	loss = torchx.Item(total)
	if s.Sync != nil {
		loss = s.Sync.AverageLoss(loss)
	}
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return // no update; the next ZeroGrad clears these gradients
	}
	if u.GradClip > 0 {
		if s.params == nil {
			s.params = models.Parameters(s.Model)
		}
		torchx.ClipGradNormAsync(s.params, u.GradClip)
	}
	s.Opt.Step()
	return loss
}

func anyKnown(b *data.PatchBatch) bool {
	for _, k := range b.Known {
		if k > 0 {
			return true
		}
	}
	return false
}
