package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/dist"
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
	// checkpoint, as an *Interrupted error. In data-parallel training a signal to any rank
	// stops every rank at the same step.
	Interrupt <-chan os.Signal
	// Group is the process group of data-parallel training (nil: one process). Every rank
	// trains on its shard of each epoch with gradients averaged over the ranks; rank 0 alone
	// writes the run folder (config, metrics, checkpoints, model) and shows progress.
	Group *dist.Group
	// Provenance is the run's run.json record (code, device, command, inputs); rank 0
	// writes it when the run starts and when it ends. nil: none.
	Provenance *runs.Provenance
}

// rank0 reports whether this process writes the run folder.
func (o RunOptions) rank0() bool { return o.Group == nil || o.Group.Rank() == 0 }

// rank is this process's rank (0 without a group).
func (o RunOptions) rank() int {
	if o.Group == nil {
		return 0
	}
	return o.Group.Rank()
}

// world is the number of ranks (1 without a group).
func (o RunOptions) world() int {
	if o.Group == nil {
		return 1
	}
	return o.Group.Size()
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
	ShardedEpochs   bool   // PerEpoch is a rank's shard of an epoch: it depends on the world size
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
	t0      time.Time   // when the current step began
	ddp     *dist.DDP   // data-parallel gradient averaging (nil: one process)
	scale   *runs.Scale // the in-plane scale trained at, written beside the config (nil: none)
}

// newRun makes (or, resuming, reuses) the run folder o.Dir, refusing to start over a run.
func newRun(o RunOptions, what string) (*run, error) {
	r := &run{RunOptions: o, what: what}
	var err error
	if o.rank0() {
		if err = os.MkdirAll(o.Dir, 0o755); err != nil {
			err = fmt.Errorf("%s: %w", what, err)
		} else {
			err = runs.CheckFresh(o.Dir, o.Resume, what)
		}
	}
	return r, r.agree(err)
}

// agree makes every rank see a failure of any rank (a collective; a no-op in one process):
// this rank's own error, or one saying that another rank failed.
func (r *run) agree(err error) error {
	if r.Group == nil {
		return err
	}
	failed := 0.0
	if err != nil {
		failed = float64(r.Group.Rank() + 1)
	}
	v, cerr := r.Group.AllReduceScalars(true, failed)
	switch {
	case err != nil:
		return err
	case cerr != nil:
		return fmt.Errorf("%s: %w", r.what, cerr)
	case v[0] > 0:
		return fmt.Errorf("%s: rank %d failed (its message is above); rank %d stops too", r.what, int(v[0])-1, r.Group.Rank())
	}
	return nil
}

// shard is this rank's share of each epoch.
func (r *run) shard(dropLast bool) data.Shard {
	return data.Shard{Rank: r.rank(), World: r.world(), DropLast: dropLast}
}

// sync is the stepper's part of data-parallel training (nil in one process).
func (r *run) sync() Sync {
	if r.ddp == nil {
		return nil
	}
	return r.ddp
}

// start restores the checkpoint when resuming, makes every rank's model and optimizer rank
// 0's in data-parallel training, writes the config and opens the metrics log and the progress
// bar. Call finish (or close) when the loop ends.
func (r *run) start(c *configs.Config, m models.Module, opt *torchx.Optimizer, p plan) error {
	r.model, r.opt, r.plan = m, opt, p
	var err error
	if r.Resume && r.rank0() {
		err = r.resume()
	}
	if err = r.agree(err); err != nil {
		return err
	}
	if r.Group != nil {
		if err := r.replicate(m, opt, c.Dist.BucketCapMB); err != nil {
			return fmt.Errorf("%s: %w", r.what, err)
		}
		if c.Dist.SyncBatchNorm {
			models.SetCrossBatchNorm(m, r.Group.SyncBatchNorm())
		}
	}
	r.rescale()
	if r.rank0() {
		err = r.openLog(c)
	}
	if err = r.agree(err); err != nil {
		return err
	}
	r.t0 = time.Now()
	return nil
}

// resume loads the checkpoint into the model and optimizer (rank 0).
func (r *run) resume() error {
	if !runs.Has(r.Dir, runs.CheckpointFile) {
		return fmt.Errorf("%s: --resume: no checkpoint in %s", r.what, r.Dir)
	}
	var err error
	if r.pos, err = runs.LoadCheckpoint(runs.Path(r.Dir, runs.CheckpointFile), r.model, r.opt); err != nil {
		return fmt.Errorf("%s: --resume: %w", r.what, err)
	}
	return nil
}

// replicate gives every rank rank 0's weights and buffers (DDP's start) and, resuming, rank
// 0's optimizer state and progress, so that the ranks start as one.
func (r *run) replicate(m models.Module, opt *torchx.Optimizer, bucketCapMB int) error {
	var err error
	if r.ddp, err = dist.NewDDP(r.Group, models.Parameters(m), models.Buffers(m), bucketCapMB); err != nil {
		return err
	}
	if !r.Resume {
		return nil
	}
	var state, pos []byte
	if r.rank0() {
		state = opt.State()
		pos, _ = json.Marshal(r.pos)
	}
	if state, err = r.Group.BroadcastBytes(state, 0); err != nil {
		return err
	}
	if pos, err = r.Group.BroadcastBytes(pos, 0); err != nil {
		return err
	}
	if !r.rank0() {
		if err := opt.LoadState(state); err != nil {
			return fmt.Errorf("rank 0's optimizer state: %w", err)
		}
		return json.Unmarshal(pos, &r.pos)
	}
	return nil
}

// rescale carries a resumed position over to another number of processes. With sharded
// epochs (the correspondence flow) an epoch's steps depend on the world size: the same epoch
// and fraction of it done, the step count recomputed; otherwise (UNETR++'s fixed iterations
// per epoch) the same step. The samples from there on are not those the old world size would
// have drawn, and the log says so.
func (r *run) rescale() {
	old, now := max(r.pos.World, 1), r.world()
	r.pos.World = r.savedWorld()
	if !r.Resume || old == now {
		return
	}
	if r.plan.ShardedEpochs {
		// Each rank's shard of an epoch, and so the steps to an epoch, scale with the world.
		r.pos.Batch = min(r.pos.Batch*old/now, r.plan.PerEpoch-1)
		r.pos.Step = r.pos.Epoch*r.plan.PerEpoch + r.pos.Batch
	}
	if r.rank0() && r.Log != nil {
		fmt.Fprintf(r.Log, "%s: resuming a run of %d process(es) with %d: the order of the samples changes from step %d on\n",
			r.what, old, now, r.pos.Step)
	}
}

// savedWorld is the world size a checkpoint records: 0 for one process, as before data-
// parallel training existed.
func (r *run) savedWorld() int {
	if r.Group == nil {
		return 0
	}
	return r.world()
}

// openLog writes the config and opens metrics.jsonl and the progress bar (rank 0).
func (r *run) openLog(c *configs.Config) error {
	if err := runs.WriteConfig(r.Dir, c); err != nil {
		return err
	}
	if r.scale != nil {
		if err := runs.WriteScale(r.Dir, *r.scale); err != nil {
			return fmt.Errorf("%s: %w", r.what, err)
		}
	}
	if err := r.Provenance.Begin(r.Dir, r.Resume); err != nil {
		return fmt.Errorf("%s: %w", r.what, err)
	}
	f, err := os.OpenFile(runs.Path(r.Dir, runs.MetricsFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w", r.what, err)
	}
	r.metrics = f
	r.bar = progress.New(r.Log, r.plan.Total, r.plan.Title, 10*time.Second)
	if r.pos.Step > 0 {
		r.bar.Add(r.pos.Step, fmt.Sprintf("resumed at step %d", r.pos.Step))
	}
	return nil
}

// record books the step taken at pos and reports whether the loop goes on: an error or a
// non-finite loss stops it; otherwise the progress moves on, the step is logged, and a
// checkpoint, StopAfter or a signal may end the run here.
func (r *run) record(pos runs.Progress, s stepLog, err error) bool {
	torchx.GC()
	if err != nil {
		r.err = fmt.Errorf("%s: step %d: %w", r.what, pos.Step+1, err)
		if r.Group != nil {
			r.err = fmt.Errorf("%s: rank %d of %d: step %d failed (if %s stopped, its message or the launcher's says why): %w",
				r.what, r.Group.Rank(), r.Group.Size(), pos.Step+1, r.Group.Others(), err)
		}
		return false
	}
	if math.IsNaN(s.Loss) || math.IsInf(s.Loss, 0) {
		r.err = fmt.Errorf("%s: step %d (epoch %d, batch %d): %w %v; stopped, the last good checkpoint %s is kept",
			r.what, pos.Step+1, pos.Epoch, pos.Batch, ErrNonFinite, s.Loss, runs.Path(r.Dir, runs.CheckpointFile))
		return false
	}
	r.pos = pos.Next(r.plan.PerEpoch)
	r.pos.World = r.savedWorld()
	if r.res.Steps == 0 {
		r.res.FirstLoss = s.Loss
	}
	r.res.Steps++
	r.res.LastLoss = s.Loss
	r.err = r.checkpointOrStop(r.log(pos, s))
	return r.err == nil
}

// log appends the step to metrics.jsonl and the progress bar (rank 0). Samples per second
// count every rank's samples, over everything since the last step was booked (waiting for
// the batch, the step, the last step's checkpoint). They keep 4 significant digits: on a CPU
// a step takes seconds, and two decimals of 0.17 samples/s moved a figure by up to 3 %.
func (r *run) log(pos runs.Progress, s stepLog) error {
	sps := float64(s.Samples*r.world()) / time.Since(r.t0).Seconds()
	r.t0 = time.Now()
	if !r.rank0() {
		return nil
	}
	line, _ := json.Marshal(map[string]any{"step": r.pos.Step, "epoch": pos.Epoch, "batch": pos.Batch, "loss": s.Loss,
		"lr": s.LR, "samples_per_s": significant(sps, 4), "world_size": r.world(),
		"time": time.Now().UTC().Format(time.RFC3339)})
	if _, err := r.metrics.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("%s: writing %s: %w", r.what, r.metrics.Name(), err)
	}
	r.bar.Add(1, fmt.Sprintf("epoch %d, loss %.4f, %.3g %s/s", pos.Epoch, s.Loss, sps, s.Unit))
	return nil
}

// significant rounds x to n significant digits.
func significant(x float64, n int) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'g', n, 64), 64)
	return v
}

// checkpointOrStop ends the step: the periodic checkpoint (rank 0; the last step's is
// written by finish), then a stop on a local failure (failed: logging or that checkpoint),
// StopAfter or a signal. In data-parallel training the ranks agree first, in one collective,
// on whether any of them failed or was signalled, so that all stop at the same step.
func (r *run) checkpointOrStop(failed error) error {
	ck := runs.Path(r.Dir, runs.CheckpointFile)
	if every := r.plan.CheckpointEvery; failed == nil && every > 0 && r.pos.Step%every == 0 && r.pos.Step < r.plan.Total && r.rank0() {
		failed = runs.SaveCheckpoint(ck, r.model, r.opt, r.pos)
	}
	sig, err := r.signalled(failed)
	switch {
	case failed != nil:
		return failed
	case err != nil:
		return err
	case r.StopAfter > 0 && r.res.Steps >= r.StopAfter:
		return errStopped
	case sig == nil:
		return nil
	}
	if r.rank0() {
		if err := runs.SaveCheckpoint(ck, r.model, r.opt, r.pos); err != nil {
			return err
		}
	}
	return &Interrupted{Signal: sig, Step: r.pos.Step, Checkpoint: ck}
}

// signalled is the signal that ends the run at this step, if any: this process's, or in
// data-parallel training any rank's (the highest signal number). There the ranks also learn
// whether one of them failed (failed is this rank's failure): err says which, on the others.
func (r *run) signalled(failed error) (os.Signal, error) {
	var sig os.Signal
	select {
	case sig = <-r.Interrupt:
	default:
	}
	if r.Group == nil {
		return sig, nil
	}
	n, f := 0.0, 0.0
	if s, ok := sig.(syscall.Signal); ok {
		n = float64(s)
	} else if sig != nil {
		n = float64(syscall.SIGINT)
	}
	if failed != nil {
		f = float64(r.Group.Rank() + 1)
	}
	v, err := r.Group.AllReduceScalars(true, n, f)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%s: %w", r.what, err)
	case v[1] > 0 && failed == nil:
		return nil, fmt.Errorf("%s: rank %d failed at step %d (its message is above); rank %d stops too", r.what, int(v[1])-1, r.pos.Step, r.Group.Rank())
	case v[0] == 0:
		return nil, nil
	}
	return syscall.Signal(int(v[0])), nil
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
// returned as it is, and otherwise the last checkpoint and model.pt are written; run.json
// says which.
func (r *run) finish() (Result, error) {
	res, err := r.end()
	if r.rank0() && r.Provenance != nil {
		var in *Interrupted
		perr := r.Provenance.Finish(r.Dir, r.err == errStopped || errors.As(err, &in), err)
		if err == nil && perr != nil {
			err = fmt.Errorf("%s: %w", r.what, perr)
		}
	}
	return res, err
}

func (r *run) end() (Result, error) {
	r.close()
	switch {
	case r.err == errStopped:
		return r.res, nil
	case r.err != nil:
		return r.res, r.err
	}
	// Rank 0 writes the final files; every rank returns once they are written (what comes
	// next, such as pseudo-labelling with this model, may read them on any rank).
	var err error
	if r.rank0() {
		err = runs.SaveFinal(r.Dir, r.model, r.opt, r.pos)
	}
	return r.res, r.agree(err)
}

// close ends the progress bar, the metrics log and the gradient reducer (finish calls it;
// idempotent).
func (r *run) close() {
	r.ddp.Close()
	r.ddp = nil
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
