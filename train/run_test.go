package train

import (
	"os"
	"strings"
	"testing"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/runs"
)

// A metrics log that cannot be written stops the run at the first step with an error naming
// the file, instead of training on without its record.
func TestMetricsWriteErrorStops(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full on this system")
	}
	ds := phantoms(t, 1)
	c := tinyConfig(t, configs.ModeSli2Vol)
	dir := t.TempDir()
	if err := os.Symlink("/dev/full", runs.Path(dir, runs.MetricsFile)); err != nil {
		t.Fatal(err)
	}
	r, err := TrainCFN(c, Options{Data: ds, RunOptions: RunOptions{Dir: dir, Device: "cpu"}})
	if err == nil || !strings.Contains(err.Error(), runs.MetricsFile) || r.Steps != 1 {
		t.Fatalf("after %d steps: err = %v", r.Steps, err)
	}
	if runs.Has(dir, runs.ModelFile) {
		t.Fatal("a failed run wrote its final model")
	}
}

// The pair batches of a resumed run continue exactly where the interrupted one stopped,
// with the positions the checkpoint records.
func TestPairBatchesResume(t *testing.T) {
	ds := phantoms(t, 1)
	c := tinyConfig(t, configs.ModeSli2Vol)
	c.Train.Epochs = 2
	vols, err := LoadTrainVolumes(c, ds, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := data.NewPairSampler(vols, c.PairSettings())
	if err != nil {
		t.Fatal(err)
	}
	perEpoch := s.NumBatches(0, c.Train.BatchSize, data.Shard{}) // 7 pairs of 8 slices, batch 2: 4
	var all []runs.Progress
	for pos := range pairBatches(s, data.Shard{}, runs.Progress{}, c.Train.Epochs, c.Train.BatchSize) {
		all = append(all, pos)
	}
	if len(all) != 2*perEpoch || perEpoch != 4 {
		t.Fatalf("%d steps of %d per epoch", len(all), perEpoch)
	}
	for i, pos := range all {
		if pos.Step != i || pos.Epoch != i/perEpoch || pos.Batch != i%perEpoch {
			t.Fatalf("step %d at %+v", i, pos)
		}
		if i > 0 && all[i-1].Next(perEpoch) != pos {
			t.Fatalf("Next(%+v) = %+v, the iterator gives %+v", all[i-1], all[i-1].Next(perEpoch), pos)
		}
	}
	var resumed []runs.Progress
	for pos, batch := range pairBatches(s, data.Shard{}, all[5], c.Train.Epochs, c.Train.BatchSize) {
		if batch.Size == 0 {
			t.Fatal("empty batch")
		}
		resumed = append(resumed, pos)
	}
	if len(resumed) != len(all)-5 || resumed[0] != all[5] || resumed[len(resumed)-1] != all[len(all)-1] {
		t.Fatalf("resumed at %+v: %v", all[5], resumed)
	}
}
