package train

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/runs"
)

// metricLosses reads the per-step losses a run logged.
func metricLosses(t *testing.T, dir string) []float64 {
	t.Helper()
	l, err := runs.Losses(runs.Path(dir, runs.MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Training from a prepared cache, or from volumes decoded on demand within a budget of about
// one volume, with batches prepared ahead by workers, takes the same steps as training from
// volumes read whole: the first 20 losses are equal to the bit.
func TestStreamedTrainingEqualsInMemory(t *testing.T) {
	ds := phantoms(t, 3) // 3 × 7 pairs: 21 steps of one pair
	pseudo := ds.Root
	base := tinyConfig(t, configs.ModeSli2VolPlus)
	base.Train.BatchSize = 1
	train := func(name string, set func(c *configs.Config)) []float64 {
		c := *base
		set(&c)
		dir := filepath.Join(t.TempDir(), name)
		if _, err := TrainCFN(&c, Options{Data: ds, PseudoDir: pseudo, RunOptions: RunOptions{Dir: dir, Device: "cpu"}}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return metricLosses(t, dir)
	}
	want := train("memory", func(c *configs.Config) { c.Data.Workers, c.Data.Prefetch = 0, 0 })
	if len(want) < 20 {
		t.Fatalf("%d losses logged, want 20", len(want))
	}
	cacheDir := filepath.Join(t.TempDir(), "cache")
	for _, tc := range []struct {
		name string
		set  func(c *configs.Config)
	}{
		{"cache", func(c *configs.Config) { c.Data.Cache, c.Data.Workers, c.Data.Prefetch = cacheDir, 2, 3 }},
		{"cache-again", func(c *configs.Config) { c.Data.Cache, c.Data.Workers, c.Data.Prefetch = cacheDir, 1, 1 }},
		{"resident", func(c *configs.Config) { c.Data.MaxResidentGB, c.Data.Workers, c.Data.Prefetch = 40e3/1e9, 2, 2 }},
	} {
		got := train(tc.name, tc.set)
		for i := range 20 {
			if got[i] != want[i] {
				t.Fatalf("%s: loss %d is %v, in memory %v", tc.name, i, got[i], want[i])
			}
		}
	}
}

// A cache made under other settings is refused, naming the key; --force rebuilds it.
func TestStaleCacheRefused(t *testing.T) {
	ds := phantoms(t, 1)
	c := tinyConfig(t, configs.ModeSli2Vol)
	c.Data.Cache = filepath.Join(t.TempDir(), "cache")
	if _, err := PrepareCache(c, ds, "", false, nil); err != nil {
		t.Fatal(err)
	}
	c.Data.CTWindow = [2]float64{-200, 300}
	_, err := PrepareCache(c, ds, "", false, nil)
	if err == nil || !strings.Contains(err.Error(), "data.ct_window = [-300 400], the config has [-200 300]") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("stale cache: %v", err)
	}
	if _, err := PrepareCache(c, ds, "", true, nil); err != nil {
		t.Fatalf("--force: %v", err)
	}
}

// UNETR++ trained on pseudo-labels read patch by patch from the cache, batches drawn ahead,
// takes the steps of one trained on volumes read whole.
func TestStreamedRefineEqualsInMemory(t *testing.T) {
	dir := t.TempDir()
	if err := data.WritePhantomDataset(dir, 2, 4, [3]int{40, 36, 20}, data.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	ds, err := data.OpenDataset(dir)
	if err != nil {
		t.Fatal(err)
	}
	base := tinyUNETRConfig(t)
	base.UNETR.Epochs, base.UNETR.IterationsPerEpoch = 1, 4
	losses := func(name string, set func(c *configs.Config)) []float64 {
		c := *base
		set(&c)
		vols, err := SegVolumesFromPL(&c, ds, dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		run := filepath.Join(t.TempDir(), name)
		if _, err := TrainUNETRPP(&c, SegOptions{Vols: vols, RunOptions: RunOptions{Dir: run, Device: "cpu"}}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return metricLosses(t, run)
	}
	want := losses("memory", func(c *configs.Config) { c.Data.Workers, c.Data.Prefetch = 0, 0 })
	got := losses("cache", func(c *configs.Config) {
		c.Data.Cache, c.Data.Workers, c.Data.Prefetch = filepath.Join(t.TempDir(), "cache"), 2, 2
	})
	if len(want) != 4 || !reflect.DeepEqual(got, want) {
		t.Fatalf("losses from the cache %v, in memory %v", got, want)
	}
	// About one volume resident (image and labels: 40·36·20·8 bytes).
	got = losses("resident", func(c *configs.Config) { c.Data.MaxResidentGB, c.Data.Workers, c.Data.Prefetch = 300e3/1e9, 2, 2 })
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("losses from resident volumes %v, in memory %v", got, want)
	}
}
