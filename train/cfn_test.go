package train

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/runs"
	"github.com/sli2vol/sli2vol/torchx"
)

// tinyConfig trains in seconds on two cores.
func tinyConfig(t *testing.T, mode configs.Mode) *configs.Config {
	c := tinyConfigOf(mode)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

func tinyConfigOf(mode configs.Mode) *configs.Config {
	c := configs.Defaults()
	c.Device = "cpu"
	c.Model.Mode = mode
	c.Model.Width, c.Model.Stages, c.Model.BlocksPerStage, c.Model.FeatureDim, c.Model.Radius = 4, 1, 1, 8, 2
	c.Model.GEIG.Scales = []int{1, 2}
	c.Data.ResizeRange, c.Data.Crop = [2]int{32, 36}, 32
	c.Train.BatchSize, c.Train.Epochs, c.Train.LR = 2, 1, 1e-3
	c.Train.CheckpointEvery = 3
	return c
}

func phantoms(t *testing.T, cases int) *data.Dataset {
	dir := t.TempDir()
	if err := data.WritePhantomDataset(dir, cases, 1, [3]int{32, 32, 8}, data.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	ds, err := data.OpenDataset(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func readModel(t *testing.T, dir string) map[string][]float32 {
	sd, err := torchx.LoadStateDict(runs.Path(dir, runs.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float32{}
	for k, v := range sd {
		out[k] = torchx.Float32s(v)
	}
	return out
}

// A run interrupted after a checkpoint and resumed ends with exactly the weights of an
// uninterrupted run (CPU, same seed).
func TestResumeIsExact(t *testing.T) {
	ds := phantoms(t, 2)
	pseudo := ds.Root // the phantoms' own labels stand in for pseudo-labels here
	c := tinyConfig(t, configs.ModeSli2VolPlus)
	full := filepath.Join(t.TempDir(), "full")
	var log bytes.Buffer
	r, err := TrainCFN(c, Options{Data: ds, PseudoDir: pseudo, RunOptions: RunOptions{Dir: full, Device: "cpu", Log: &log}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Steps != 7 { // 2 volumes × 7 pairs of 8 slices / batch 2
		t.Fatalf("%d steps, want 7", r.Steps)
	}
	split := filepath.Join(t.TempDir(), "split")
	if _, err := TrainCFN(c, Options{Data: ds, PseudoDir: pseudo, RunOptions: RunOptions{Dir: split, Device: "cpu", Log: &log, StopAfter: 4}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(runs.Path(split, runs.ModelFile)); err == nil {
		t.Fatal("a stopped run wrote its final model")
	}
	// Without --resume an existing run is refused.
	if _, err := TrainCFN(c, Options{Data: ds, PseudoDir: pseudo, RunOptions: RunOptions{Dir: split, Device: "cpu", Log: &log}}); err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("rerun without --resume: %v", err)
	}
	r2, err := TrainCFN(c, Options{Data: ds, PseudoDir: pseudo, RunOptions: RunOptions{Dir: split, Device: "cpu", Log: &log, Resume: true}})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Steps != 4 { // resumed at the step-3 checkpoint: steps 4..7
		t.Fatalf("resumed run took %d steps, want 4", r2.Steps)
	}
	a, b := readModel(t, full), readModel(t, split)
	for k := range a {
		for i := range a[k] {
			if a[k][i] != b[k][i] {
				t.Fatalf("%s[%d]: %g uninterrupted, %g resumed", k, i, a[k][i], b[k][i])
			}
		}
	}
	lines, _ := os.ReadFile(runs.Path(full, runs.MetricsFile))
	if n := strings.Count(string(lines), "\n"); n != 7 || !strings.Contains(string(lines), `"samples_per_s"`) {
		t.Fatalf("metrics.jsonl has %d lines:\n%s", n, lines)
	}
	// The run folder loads for inference.
	if r, err := runs.LoadCFN(full, ""); err != nil || !r.Model.UsesPL() {
		t.Fatalf("runs.LoadCFN: %v", err)
	}
}

func TestTrainNeedsPseudoLabels(t *testing.T) {
	ds := phantoms(t, 1)
	c := tinyConfig(t, configs.ModeSli2VolPlus)
	_, err := TrainCFN(c, Options{Data: ds, RunOptions: RunOptions{Dir: t.TempDir(), Device: "cpu"}})
	if err == nil || !strings.Contains(err.Error(), "--pseudo") {
		t.Fatalf("sli2vol+ without PLs: %v", err)
	}
	_, err = TrainCFN(c, Options{Data: ds, PseudoDir: t.TempDir(), RunOptions: RunOptions{Dir: t.TempDir(), Device: "cpu"}})
	if err == nil || !strings.Contains(err.Error(), "none for case phantom_000") {
		t.Fatalf("missing PL file: %v", err)
	}
}

// corruptStep feeds step n (1-based) a batch of NaNs, as a corrupt input would.
func corruptStep(n int) func(cfnStep) cfnStep {
	return func(next cfnStep) cfnStep {
		calls := 0
		return func(b data.Batch) (float64, error) {
			if calls++; calls == n {
				for i := range b.A {
					b.A[i] = float32(math.NaN())
				}
			}
			return next(b)
		}
	}
}

// A NaN loss stops the run with a message naming the step; the last good checkpoint stays.
func TestNaNLossStops(t *testing.T) {
	ds := phantoms(t, 1)
	c := tinyConfig(t, configs.ModeSli2Vol)
	dir := t.TempDir()
	_, err := TrainCFN(c, Options{Data: ds, wrapStep: corruptStep(4), RunOptions: RunOptions{Dir: dir, Device: "cpu"}})
	if !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), "step 4 ") {
		t.Fatalf("err = %v", err)
	}
	// The step-3 checkpoint is intact and resumable.
	c2 := tinyConfig(t, configs.ModeSli2Vol)
	m, _ := runs.NewCFN(c2.Model)
	opt, _ := NewOptimizer(c2.Train, models.Parameters(m), 10)
	p, err := runs.LoadCheckpoint(runs.Path(dir, runs.CheckpointFile), m, opt)
	if err != nil || p.Step != 3 {
		t.Fatalf("checkpoint after the NaN: %+v %v", p, err)
	}
	if _, err := os.Stat(runs.Path(dir, runs.ModelFile)); err == nil {
		t.Fatal("a failed run wrote its final model")
	}
}

// A signal ends the run after the current step with a checkpoint and an exit code of
// 128 + the signal.
func TestInterruptWritesCheckpoint(t *testing.T) {
	ds := phantoms(t, 1)
	c := tinyConfig(t, configs.ModeSli2Vol)
	c.Train.CheckpointEvery = 0
	dir := t.TempDir()
	sig := make(chan os.Signal, 1)
	sig <- syscall.SIGTERM
	_, err := TrainCFN(c, Options{Data: ds, RunOptions: RunOptions{Dir: dir, Device: "cpu", Interrupt: sig}})
	var in *Interrupted
	if !errors.As(err, &in) || in.Step != 1 || in.ExitCode() != 143 {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(runs.Path(dir, runs.CheckpointFile)); err != nil {
		t.Fatal("no checkpoint after the interrupt")
	}
}

// bf16 autocast and channels-last train too, and their losses stay within bfloat16's
// tolerance of the float32 run (same seed, same batches).
func TestMixedPrecisionAndChannelsLast(t *testing.T) {
	ds := phantoms(t, 1)
	c := tinyConfig(t, configs.ModeSli2Vol)
	ref, err := TrainCFN(c, Options{Data: ds, RunOptions: RunOptions{Dir: t.TempDir(), Device: "cpu"}})
	if err != nil {
		t.Fatal(err)
	}
	c.Train.AMP, c.Train.ChannelsLast = configs.AMPBF16, true
	got, err := TrainCFN(c, Options{Data: ds, RunOptions: RunOptions{Dir: t.TempDir(), Device: "cpu"}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Steps != ref.Steps || math.Abs(got.FirstLoss-ref.FirstLoss) > 0.03*ref.FirstLoss {
		t.Fatalf("bf16 + channels-last first loss %.5f vs float32 %.5f (%d vs %d steps)", got.FirstLoss, ref.FirstLoss, got.Steps, ref.Steps)
	}
}
