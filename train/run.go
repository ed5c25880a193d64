package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"os"
	"syscall"
	"time"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/internal/progress"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/runs"
	"github.com/sli2vol/sli2vol/torchx"
)

// RunOptions are what every training run takes besides its config and data.
type RunOptions struct {
	Dir    string // run folder
	Device string // resolved ("cpu", "cuda:0")
	Resume bool   // continue from Dir's checkpoint
	Log    io.Writer
	// StopAfter ends the run after this many optimizer steps (0: run to the end), without the
	// final files, as a kill would: for tests that interrupt a run.
	StopAfter int
	// Interrupt: a signal received here ends the run after the current step, with a
	// checkpoint, as an *Interrupted error.
	Interrupt <-chan os.Signal
}

// Result summarises a finished (or stopped) run.
type Result struct {
	Steps     int
	FirstLoss float64
	LastLoss  float64
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

// ErrNonFinite reports a NaN or infinite loss; the last good checkpoint is kept.
var ErrNonFinite = errors.New("non-finite loss")

var errStopped = errors.New("stopped on request")

// plan is the shape of a run: how many steps, how they fall into epochs, how it reports.
type plan struct {
	Title           string // progress bar
	Total           int    // optimizer steps of the whole run
	PerEpoch        int    // steps to an epoch
	CheckpointEvery int    // steps; 0: only at the end
}

// stepLog is what a trainer's loop reports of one step.
type stepLog struct {
	Loss, LR float64
	Samples  int    // batch size
	Unit     string // what a sample is, for the progress line ("samples", "patches")
}

// run is the bookkeeping of one training run around a trainer's loop: the run folder, resume,
// metrics.jsonl, the progress bar, checkpoints, stop-after, signals and the non-finite-loss
// stop. The loop itself (sample, step, record) stays in the trainer.
type run struct {
	RunOptions
	what    string // error prefix ("train", "unetr")
	plan    plan
	model   models.Module
	opt     *torchx.Optimizer
	pos     runs.Progress // where the next step starts
	res     Result
	metrics *os.File
	bar     *progress.Reporter
	err     error
	t0      time.Time // when the current step began
}

// newRun makes (or, resuming, reuses) the run folder o.Dir, refusing to start over a run.
func newRun(o RunOptions, what string) (*run, error) {
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := runs.CheckFresh(o.Dir, o.Resume, what); err != nil {
		return nil, err
	}
	return &run{RunOptions: o, what: what}, nil
}

// start restores the checkpoint when resuming, writes the config and opens the metrics log
// and the progress bar. Call close when the loop ends.
func (r *run) start(c *configs.Config, m models.Module, opt *torchx.Optimizer, p plan) error {
	r.model, r.opt, r.plan = m, opt, p
	if r.Resume {
		ck := runs.Path(r.Dir, runs.CheckpointFile)
		if !runs.Has(r.Dir, runs.CheckpointFile) {
			return fmt.Errorf("%s: --resume: no checkpoint in %s", r.what, r.Dir)
		}
		var err error
		if r.pos, err = runs.LoadCheckpoint(ck, m, opt); err != nil {
			return fmt.Errorf("%s: --resume: %w", r.what, err)
		}
	}
	if err := runs.WriteConfig(r.Dir, c); err != nil {
		return err
	}
	f, err := os.OpenFile(runs.Path(r.Dir, runs.MetricsFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w", r.what, err)
	}
	r.metrics = f
	r.bar = progress.New(r.Log, p.Total, p.Title, 10*time.Second)
	if r.pos.Step > 0 {
		r.bar.Add(r.pos.Step, fmt.Sprintf("resumed at step %d", r.pos.Step))
	}
	r.t0 = time.Now()
	return nil
}

// record books the step taken at pos and reports whether the loop goes on: an error or a
// non-finite loss stops it; otherwise the progress moves on, the step is logged, and a
// checkpoint, StopAfter or a signal may end the run here.
func (r *run) record(pos runs.Progress, s stepLog, err error) bool {
	torchx.GC()
	if err != nil {
		r.err = fmt.Errorf("%s: step %d: %w", r.what, pos.Step+1, err)
		return false
	}
	if math.IsNaN(s.Loss) || math.IsInf(s.Loss, 0) {
		r.err = fmt.Errorf("%s: step %d (epoch %d, batch %d): %w %v; stopped, the last good checkpoint %s is kept",
			r.what, pos.Step+1, pos.Epoch, pos.Batch, ErrNonFinite, s.Loss, runs.Path(r.Dir, runs.CheckpointFile))
		return false
	}
	r.pos = pos.Next(r.plan.PerEpoch)
	if r.res.Steps == 0 {
		r.res.FirstLoss = s.Loss
	}
	r.res.Steps++
	r.res.LastLoss = s.Loss
	if r.err = r.log(pos, s); r.err != nil {
		return false
	}
	r.err = r.checkpointOrStop()
	return r.err == nil
}

// log appends the step to metrics.jsonl and the progress bar.
func (r *run) log(pos runs.Progress, s stepLog) error {
	sps := float64(s.Samples) / time.Since(r.t0).Seconds()
	r.t0 = time.Now()
	line, _ := json.Marshal(map[string]any{"step": r.pos.Step, "epoch": pos.Epoch, "batch": pos.Batch, "loss": s.Loss,
		"lr": s.LR, "samples_per_s": math.Round(sps*100) / 100, "time": time.Now().UTC().Format(time.RFC3339)})
	if _, err := r.metrics.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("%s: writing %s: %w", r.what, r.metrics.Name(), err)
	}
	r.bar.Add(1, fmt.Sprintf("epoch %d, loss %.4f, %.1f %s/s", pos.Epoch, s.Loss, sps, s.Unit))
	return nil
}

// checkpointOrStop writes the periodic checkpoint (the last step's is written by finish) and
// ends the run on StopAfter or a signal.
func (r *run) checkpointOrStop() error {
	ck := runs.Path(r.Dir, runs.CheckpointFile)
	if every := r.plan.CheckpointEvery; every > 0 && r.pos.Step%every == 0 && r.pos.Step < r.plan.Total {
		if err := runs.SaveCheckpoint(ck, r.model, r.opt, r.pos); err != nil {
			return err
		}
	}
	if r.StopAfter > 0 && r.res.Steps >= r.StopAfter {
		return errStopped
	}
	select {
	case sig := <-r.Interrupt:
		if err := runs.SaveCheckpoint(ck, r.model, r.opt, r.pos); err != nil {
			return err
		}
		return &Interrupted{Signal: sig, Step: r.pos.Step, Checkpoint: ck}
	default:
		return nil
	}
}

// steps yields the positions of the run's remaining steps (the UNETR++ trainer samples
// each step's batch itself).
func (r *run) steps() iter.Seq[runs.Progress] {
	return func(yield func(runs.Progress) bool) {
		for p := r.pos; p.Step < r.plan.Total; p = p.Next(r.plan.PerEpoch) {
			if !yield(p) {
				return
			}
		}
	}
}

// finish ends the run: a stop on request is a success with no final files, an error is
// returned as it is, and otherwise the last checkpoint and model.pt are written.
func (r *run) finish() (Result, error) {
	r.close()
	switch {
	case r.err == errStopped:
		return r.res, nil
	case r.err != nil:
		return r.res, r.err
	}
	return r.res, runs.SaveFinal(r.Dir, r.model, r.opt, r.pos)
}

// close ends the progress bar and the metrics log (finish calls it; idempotent).
func (r *run) close() {
	if r.bar != nil {
		r.bar.Finish()
		r.bar = nil
	}
	if r.metrics != nil {
		if err := r.metrics.Close(); err != nil && r.err == nil {
			r.err = fmt.Errorf("%s: %w", r.what, err)
		}
		r.metrics = nil
	}
}
