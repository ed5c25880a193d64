package train

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"time"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/data/tensors"
	"github.com/sli2vol/sli2vol/internal/atomicfile"
	"github.com/sli2vol/sli2vol/internal/progress"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/torchx"
)

// ClassesFile records, in a UNETR++ run folder, which label id each output class is.
const ClassesFile = "classes.json"

// SegOptions are a UNETR++ training run's inputs beyond the config.
type SegOptions struct {
	Vols      []*data.SegVolume // labels as label ids; mapped to classes here
	RunDir    string
	Device    string
	Resume    bool
	Log       io.Writer
	Title     string // progress bar ("refine", "fs-ss")
	StopAfter int
	Interrupt <-chan os.Signal
}

// SegVolumesFromPL reads the training split with each case's pseudo-labels as labels
// (every voxel known): what the refinement network trains on.
func SegVolumesFromPL(c *configs.Config, ds *data.Dataset, pseudoDir string) ([]*data.SegVolume, error) {
	tvs, err := LoadTrainVolumes(c, ds, pseudoDir)
	if err != nil {
		return nil, err
	}
	out := make([]*data.SegVolume, len(tvs))
	for i, tv := range tvs {
		out[i] = &data.SegVolume{ID: tv.ID, Shape: data.SegShape(tv.Slicer),
			Image: data.SegImage(tv.Image, tv.Slicer, tv.Norm.Test()), Labels: data.ToSliceOrder(tv.Slicer, tv.PL.Data)}
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
	var res Result
	u := c.UNETR
	if err := os.MkdirAll(o.RunDir, 0o755); err != nil {
		return res, fmt.Errorf("unetr: %v", err)
	}
	ckPath := filepath.Join(o.RunDir, CheckpointFile)
	if err := checkFreshRun(o.RunDir, o.Resume, "unetr"); err != nil {
		return res, err
	}
	labels := make([][]int32, len(o.Vols))
	for i, v := range o.Vols {
		labels[i] = v.Labels
	}
	classes := data.NewClassMap(labels...)
	if len(classes.IDs) < 2 {
		return res, fmt.Errorf("unetr: the training labels hold no foreground voxel")
	}
	if o.Resume {
		if prev, err := readClasses(o.RunDir); err == nil && fmt.Sprint(prev.IDs) != fmt.Sprint(classes.IDs) {
			return res, fmt.Errorf("unetr: --resume: the run was trained on label ids %v, the data now has %v", prev.IDs, classes.IDs)
		}
	}
	vols := make([]*data.SegVolume, len(o.Vols))
	for i, v := range o.Vols {
		cl, err := classes.ToClasses(v.Labels)
		if err != nil {
			return res, fmt.Errorf("unetr: %s: %v", v.ID, err)
		}
		cp := *v
		cp.Labels = cl
		vols[i] = &cp
	}
	sampler, err := data.NewPatchSampler(vols, u.PatchSize, u.ForegroundFraction, u.Mirror, rand.New(rand.NewSource(c.Seed)))
	if err != nil {
		return res, fmt.Errorf("unetr: %v", err)
	}
	mc := models.UNETRPPConfigFrom(u, 1, len(classes.IDs))
	total := u.Epochs * u.IterationsPerEpoch

	var model *models.UNETRPP
	var opt *torchx.Optimizer
	var prog Progress
	if err := torchx.Try(func() {
		torchx.ManualSeed(uint64(c.Seed))
		if model, err = models.NewUNETRPP(mc); err != nil {
			return
		}
		models.To(model, o.Device)
		models.SetTraining(model, true)
		opt = NewSegOptimizer(u, models.Parameters(model))
	}); err != nil {
		return res, fmt.Errorf("unetr: building the model on %s: %w", o.Device, err)
	}
	if err != nil {
		return res, fmt.Errorf("unetr: %w", err)
	}
	defer opt.Close()
	if o.Resume {
		if _, err := os.Stat(ckPath); err != nil {
			return res, fmt.Errorf("unetr: --resume: no checkpoint in %s", o.RunDir)
		}
		if prog, err = LoadCheckpoint(ckPath, model, opt); err != nil {
			return res, fmt.Errorf("unetr: --resume: %w", err)
		}
	}
	if err := WriteRunConfig(o.RunDir, c); err != nil {
		return res, err
	}
	if err := writeClasses(filepath.Join(o.RunDir, ClassesFile), classes); err != nil {
		return res, err
	}
	metrics, err := os.OpenFile(filepath.Join(o.RunDir, MetricsFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return res, fmt.Errorf("unetr: %v", err)
	}
	defer metrics.Close()

	title := o.Title
	if title == "" {
		title = "unetr++"
	}
	bar := progress.New(o.Log, total, title, 10*time.Second)
	if prog.Step > 0 {
		bar.Add(prog.Step, fmt.Sprintf("resumed at step %d", prog.Step))
	}
	step := &SegStepper{Cfg: c, Model: model, Opt: opt, Device: o.Device}
	var runErr error
	for prog.Step < total {
		t0 := time.Now()
		epoch := prog.Step / u.IterationsPerEpoch
		lr := u.LR * math.Pow(1-float64(epoch)/float64(u.Epochs), u.PolyPower)
		opt.SetLR(lr)
		r := rand.New(rand.NewSource(c.Seed*1_000_003 + int64(prog.Step)))
		torchx.ManualSeed(uint64(c.Seed)*1_000_003 + uint64(prog.Step))
		batch := sampler.Sample(u.BatchSize, r)
		loss, err := step.Step(batch)
		torchx.GC()
		if err != nil {
			runErr = fmt.Errorf("unetr: step %d: %w", prog.Step+1, err)
			break
		}
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			runErr = fmt.Errorf("unetr: step %d: %w %v; stopped, the last good checkpoint %s is kept", prog.Step+1, ErrNonFinite, loss, ckPath)
			break
		}
		prog.Step++
		prog.Epoch = prog.Step / u.IterationsPerEpoch
		prog.Batch = prog.Step % u.IterationsPerEpoch
		if res.Steps == 0 {
			res.FirstLoss = loss
		}
		res.Steps++
		res.LastLoss = loss
		sps := float64(u.BatchSize) / time.Since(t0).Seconds()
		line, _ := json.Marshal(map[string]any{"step": prog.Step, "epoch": epoch, "loss": loss, "lr": lr,
			"samples_per_s": math.Round(sps*100) / 100, "time": time.Now().UTC().Format(time.RFC3339)})
		metrics.Write(append(line, '\n'))
		bar.Add(1, fmt.Sprintf("epoch %d, loss %.4f, %.2f patches/s", epoch, loss, sps))
		if prog.Step%u.CheckpointEvery == 0 && prog.Step < total {
			if runErr = SaveCheckpoint(ckPath, model, opt, prog); runErr != nil {
				break
			}
		}
		if o.StopAfter > 0 && res.Steps >= o.StopAfter {
			runErr = errStopped
			break
		}
		select {
		case sig := <-o.Interrupt:
			if runErr = SaveCheckpoint(ckPath, model, opt, prog); runErr == nil {
				runErr = &Interrupted{Signal: sig, Step: prog.Step, Checkpoint: ckPath}
			}
		default:
		}
		if runErr != nil {
			break
		}
	}
	bar.Finish()
	return res, finishRun(runErr, o.RunDir, model, opt, prog)
}

// NewSegOptimizer builds unetr.optimizer (SGD with momentum/Nesterov, or AdamW) over params.
func NewSegOptimizer(u configs.UNETR, params []torchx.Tensor) *torchx.Optimizer {
	if u.Optimizer == "adamw" {
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
	// Forward, loss and the queued backward in their own scope, which keeps only the loss's
	// value: temporaries and graph go while the GPU still runs the backward (Stepper.step).
	total := torchx.Tidy(func() torchx.Tensor {
		p := tensors.FromPatchBatch(b, s.Device)
		outs := s.Model.Forward(p.Image, true)
		w := DeepSupervisionWeights(len(outs))
		var total torchx.Tensor
		for i, out := range outs {
			t := p
			if i > 0 {
				t = tensors.FromPatchBatch(targets[i], s.Device)
				if !anyKnown(targets[i]) {
					continue // FS-SS: this scale dropped every known voxel
				}
			}
			l := torchx.MulScalar(DiceCELoss(out, t.Labels, t.Known), w[i])
			if total.T == nil {
				total = l
			} else {
				total = torchx.Add(total, l)
			}
		}
		// The backward pass is queued before the loss is read.
		torchx.Backward(total)
		return torchx.Detach(total)
	})
	loss = torchx.Item(total)
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

// writeClasses stores the label id of each output class as {"ids": [...]}.
func writeClasses(path string, m data.ClassMap) error {
	b, _ := json.MarshalIndent(map[string]any{"ids": m.IDs}, "", "  ")
	return atomicfile.WriteFile(path, b)
}

func readClasses(dir string) (data.ClassMap, error) {
	var m data.ClassMap
	b, err := os.ReadFile(filepath.Join(dir, ClassesFile))
	if err != nil {
		return m, err
	}
	var f struct{ IDs []int32 }
	if err := json.Unmarshal(b, &f); err != nil || len(f.IDs) < 2 {
		return m, fmt.Errorf("%s: not a class list (%v)", filepath.Join(dir, ClassesFile), err)
	}
	m.IDs = f.IDs
	return m, nil
}

// LoadUNETRRun reads a UNETR++ run folder: config, class ids and the final (or, failing
// that, checkpointed) weights, in evaluation mode on the CPU.
func LoadUNETRRun(dir string) (*configs.Config, *models.UNETRPP, data.ClassMap, error) {
	c, err := configs.Load(filepath.Join(dir, ConfigFile))
	if err != nil {
		if _, statErr := os.Stat(dir); statErr != nil {
			return nil, nil, data.ClassMap{}, fmt.Errorf("model %s: %v", dir, statErr)
		}
		return nil, nil, data.ClassMap{}, fmt.Errorf("model %s: %w", dir, err)
	}
	classes, err := readClasses(dir)
	if err != nil {
		return nil, nil, classes, fmt.Errorf("model %s: not a UNETR++ run: %v", dir, err)
	}
	var m *models.UNETRPP
	if err := torchx.Try(func() { m, err = models.NewUNETRPP(models.UNETRPPConfigFrom(c.UNETR, 1, len(classes.IDs))) }); err != nil {
		return nil, nil, classes, fmt.Errorf("model %s: %w", dir, err)
	}
	if err != nil {
		return nil, nil, classes, fmt.Errorf("model %s: %w", dir, err)
	}
	weights := filepath.Join(dir, ModelFile)
	if _, err := os.Stat(weights); err == nil {
		sd, err := torchx.LoadStateDict(weights)
		if err != nil {
			return nil, nil, classes, fmt.Errorf("model %s: %w", weights, err)
		}
		if err := models.LoadStateDict(m, sd); err != nil {
			return nil, nil, classes, fmt.Errorf("model %s: %w", weights, err)
		}
	} else {
		opt := NewSegOptimizer(c.UNETR, models.Parameters(m))
		defer opt.Close()
		if _, err := LoadCheckpoint(filepath.Join(dir, CheckpointFile), m, opt); err != nil {
			return nil, nil, classes, fmt.Errorf("model %s: no model.pt and %v", dir, err)
		}
	}
	models.SetTraining(m, false)
	return c, m, classes, nil
}
