package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/data/tensors"
	"github.com/sli2vol/sli2vol/internal/progress"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/torchx"
)

// Options are a training run's inputs beyond the config.
type Options struct {
	Data      *data.Dataset
	PseudoDir string // pseudo-labels (required in mode sli2vol+)
	RunDir    string
	Device    string // resolved ("cpu", "cuda:0")
	Resume    bool
	Log       io.Writer
	// StopAfter ends the run after this many optimizer steps (0: run to the end), for tests
	// that interrupt a run the way a kill would.
	StopAfter int
	// Interrupt: a signal received here ends the run after the current step, with a
	// checkpoint, as an *Interrupted error.
	Interrupt <-chan os.Signal
	// corruptStep (tests) replaces that step's batch with NaNs, as a corrupt input would.
	corruptStep int
}

// Interrupted reports a run stopped by a signal; its checkpoint is saved.
type Interrupted struct {
	Signal     os.Signal
	Step       int
	Checkpoint string
}

func (e *Interrupted) Error() string {
	return fmt.Sprintf("interrupted by %v after step %d; checkpoint saved to %s (continue with --resume)", e.Signal, e.Step, e.Checkpoint)
}

// ExitCode is 128 + the signal number, as shells report a process killed by it
// (130 for SIGINT, 143 for SIGTERM).
func (e *Interrupted) ExitCode() int {
	if s, ok := e.Signal.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 130
}

// Result summarises a finished (or stopped) run.
type Result struct {
	Steps     int
	FirstLoss float64
	LastLoss  float64
}

// ErrNonFinite reports a NaN or infinite loss; the last good checkpoint is kept.
var ErrNonFinite = errors.New("non-finite loss")

// NewOptimizer builds the configured optimizer and learning-rate schedule over params.
func NewOptimizer(t configs.Train, params []torchx.Tensor, totalSteps int) (*torchx.Optimizer, torchx.Schedule) {
	var opt *torchx.Optimizer
	if t.Optimizer == "sgd" {
		opt = torchx.NewSGD(params, torchx.SGDOpts{LR: t.LR, Momentum: t.Momentum, WeightDecay: t.WeightDecay, Nesterov: t.Nesterov})
	} else {
		opt = torchx.NewAdamW(params, torchx.AdamWOpts{LR: t.LR, WeightDecay: t.WeightDecay})
	}
	var sch torchx.Schedule = torchx.ConstantLR{Base: t.LR}
	switch t.Schedule {
	case "step":
		sch = torchx.StepLR{Base: t.LR, StepSize: t.StepSize, Gamma: t.Gamma}
	case "poly":
		sch = torchx.PolyLR{Base: t.LR, Total: totalSteps, Power: t.PolyPower}
	}
	return opt, sch
}

// TrainCFN trains Sli2Vol (mode sli2vol) or Sli2Vol+'s OEG-CFN (mode sli2vol+): pairs of
// slices, the affinity of their features reconstructs slice j+1 from slice j, an L1-type loss
// against the real slice j+1. One loop, checkpoints every train.checkpoint_every steps and
// at the end, exact resume from the last checkpoint.
func TrainCFN(c *configs.Config, o Options) (Result, error) {
	defer torchx.PinThread()()
	var res Result
	if c.Model.Mode == "sli2vol+" && o.PseudoDir == "" {
		return res, fmt.Errorf("train: mode sli2vol+ needs pseudo-labels (--pseudo DIR, from sli2vol pseudo-label)")
	}
	pseudo := o.PseudoDir
	if c.Model.Mode == "sli2vol" {
		pseudo = ""
	}
	if err := os.MkdirAll(o.RunDir, 0o755); err != nil {
		return res, fmt.Errorf("train: %v", err)
	}
	ckPath := filepath.Join(o.RunDir, CheckpointFile)
	if err := checkFreshRun(o.RunDir, o.Resume, "train"); err != nil {
		return res, err
	}
	vols, err := LoadTrainVolumes(c, o.Data, pseudo)
	if err != nil {
		return res, err
	}
	sampler, err := data.NewPairSampler(vols, data.PairsFrom(c))
	if err != nil {
		return res, err
	}
	stepsPerEpoch := sampler.NumBatches(0, c.Train.BatchSize)
	total := stepsPerEpoch * c.Train.Epochs

	var model *models.CFN
	var opt *torchx.Optimizer
	var sched torchx.Schedule
	var prog Progress
	if err := torchx.Try(func() {
		torchx.ManualSeed(uint64(c.Seed))
		model, err = models.NewCFN(c.Model)
		if err != nil {
			return
		}
		models.To(model, o.Device)
		if c.Train.ChannelsLast {
			models.ToChannelsLast(model)
		}
		torchx.SetCUDNNBenchmark(c.Train.CUDNNBenchmark)
		models.SetTraining(model, true)
		opt, sched = NewOptimizer(c.Train, models.Parameters(model), total)
	}); err != nil {
		return res, fmt.Errorf("train: building the model on %s: %w", o.Device, err)
	}
	if err != nil {
		return res, err
	}
	defer opt.Close()
	if o.Resume {
		if _, err := os.Stat(ckPath); err != nil {
			return res, fmt.Errorf("train: --resume: no checkpoint in %s", o.RunDir)
		}
		if prog, err = LoadCheckpoint(ckPath, model, opt); err != nil {
			return res, fmt.Errorf("train: --resume: %w", err)
		}
	}
	if err := WriteRunConfig(o.RunDir, c); err != nil {
		return res, err
	}
	metrics, err := os.OpenFile(filepath.Join(o.RunDir, MetricsFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return res, fmt.Errorf("train: %v", err)
	}
	defer metrics.Close()

	bar := progress.New(o.Log, total, "train "+c.Model.Mode, 10*time.Second)
	if prog.Step > 0 {
		bar.Add(prog.Step, fmt.Sprintf("resumed at step %d", prog.Step))
	}
	stepper := &Stepper{Cfg: c, Model: model, Opt: opt, Device: o.Device}
	start := prog
	var runErr error
	for epoch := prog.Epoch; epoch < c.Train.Epochs && runErr == nil; epoch++ {
		from := 0
		if epoch == start.Epoch {
			from = start.Batch
		}
		sampler.Batches(epoch, c.Train.BatchSize, from, func(b int, batch data.Batch) bool {
			t0 := time.Now()
			lr := sched.LR(prog.Step)
			opt.SetLR(lr)
			if o.corruptStep == prog.Step+1 {
				for i := range batch.A {
					batch.A[i] = float32(math.NaN())
				}
			}
			var loss float64
			loss, runErr = stepper.Step(batch)
			torchx.GC()
			if runErr != nil {
				runErr = fmt.Errorf("train: step %d: %w", prog.Step+1, runErr)
				return false
			}
			if math.IsNaN(loss) || math.IsInf(loss, 0) {
				runErr = fmt.Errorf("train: step %d (epoch %d, batch %d): %w %v; stopped, the last good checkpoint %s is kept",
					prog.Step+1, epoch, b, ErrNonFinite, loss, ckPath)
				return false
			}
			prog.Step++
			prog.Epoch, prog.Batch = epoch, b+1
			if prog.Batch >= stepsPerEpoch {
				prog.Epoch, prog.Batch = epoch+1, 0
			}
			if res.Steps == 0 {
				res.FirstLoss = loss
			}
			res.Steps++
			res.LastLoss = loss
			sps := float64(batch.Size) / time.Since(t0).Seconds()
			line, _ := json.Marshal(map[string]any{"step": prog.Step, "epoch": epoch, "batch": b, "loss": loss, "lr": lr,
				"samples_per_s": math.Round(sps*100) / 100, "time": time.Now().UTC().Format(time.RFC3339)})
			metrics.Write(append(line, '\n'))
			bar.Add(1, fmt.Sprintf("loss %.4f, %.1f samples/s", loss, sps))
			if c.Train.CheckpointEvery > 0 && prog.Step%c.Train.CheckpointEvery == 0 {
				if runErr = SaveCheckpoint(ckPath, model, opt, prog); runErr != nil {
					return false
				}
			}
			if o.StopAfter > 0 && res.Steps >= o.StopAfter {
				runErr = errStopped
				return false
			}
			select {
			case sig := <-o.Interrupt:
				if runErr = SaveCheckpoint(ckPath, model, opt, prog); runErr == nil {
					runErr = &Interrupted{Signal: sig, Step: prog.Step, Checkpoint: ckPath}
				}
				return false
			default:
			}
			return true
		})
	}
	bar.Finish()
	return res, finishRun(runErr, o.RunDir, model, opt, prog)
}

var errStopped = errors.New("stopped on request")

// Stepper is one optimisation step of the correspondence flow — the trainer's inner loop,
// shared with the benchmarks so that they time exactly what training runs.
type Stepper struct {
	Cfg    *configs.Config
	Model  *models.CFN
	Opt    *torchx.Optimizer
	Device string
}

// Step trains on one batch: slices scaled by data.intensity_scale (and pseudo-labels in mode
// sli2vol+), the reconstruction of slice j+1 from slice j, the configured loss, backward and
// an optimizer step. A non-finite loss is returned without updating the weights.
func (s *Stepper) Step(batch data.Batch) (loss float64, err error) {
	// Every tensor of the step goes when it ends (torchx.TidyDo), not at the next GC.
	err = torchx.Try(func() { torchx.TidyDo(func() { loss = s.step(batch) }) })
	return loss, err
}

func (s *Stepper) step(batch data.Batch) (loss float64) {
	c := s.Cfg
	s.Opt.ZeroGrad()
	// Forward, loss and the queued backward in their own scope, which keeps only the loss's
	// value (detached): the last temporaries and the autograd graph (a few hundred nodes,
	// about half a millisecond to destroy) go while the GPU still runs the backward pass. A
	// GPU idles from the loss read until the host queues the next kernel, so host work after
	// that read is time lost.
	l := torchx.Tidy(func() torchx.Tensor {
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
			if c.Train.Loss == "l1" {
				l = torchx.L1Loss(recon, b, torchx.ReduceMean)
			} else {
				l = torchx.SmoothL1Loss(recon, b, torchx.ReduceMean, 1)
			}
		}
		if c.Train.AMP == "bf16" {
			// Forward and loss in mixed precision; backward outside autocast.
			torchx.Autocast(s.Device, torchx.BFloat16, forward)
		} else {
			forward()
		}
		// Backward is queued before the loss is read: on a GPU, reading a value waits for the
		// work before it, and the backward pass should already be in the queue by then.
		torchx.Backward(l)
		return torchx.Detach(l)
	})
	loss = torchx.Item(l)
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return // no update; the next ZeroGrad clears these gradients
	}
	s.Opt.Step()
	return loss
}
