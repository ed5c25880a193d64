package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sli2vol/sli2vol/internal/testpy"
)

// TestMain lets the harness smoke test start this binary as the Go side of the benchmark.
func TestMain(m *testing.M) {
	if dir := os.Getenv("SLI2VOL_DDP_UNETR"); dir != "" { // a rank of TestUNETRDDPMatchesPyTorch
		if err := unetrDDPWorker(dir); err != nil {
			os.Stderr.WriteString("rank " + os.Getenv("RANK") + ": " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv("SLI2VOL_BENCH_SELF") == "1" {
		r, err := Command(os.Args[1:])
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(2)
		}
		if r != nil {
			Print(r)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The harness end to end on tiny models: parity checks pass (same first loss — for the CFN
// and for UNETR++ — and the same propagated voxels), one round per row is timed, the report has every row and a ratio.
func TestHarnessSmoke(t *testing.T) {
	py := testpy.Find(t, "torch")
	t.Setenv("SLI2VOL_BENCH_SELF", "1")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "tiny.yaml")
	os.WriteFile(cfg, []byte("model: {width: 4, stages: 1, blocks_per_stage: 1, feature_dim: 8, radius: 2}\ndata: {resize_range: [32, 32], crop: 32}\n"+
		"unetr: {patch_size: [16, 32, 32], feature_size: 4, dims: [8, 16, 32, 64], depths: [1, 1, 1, 1], heads: 2, proj_size: [8, 8, 8, 4], decoder_proj_size: 8, decoder_depth: 1}\n"), 0o644)
	out := filepath.Join(dir, "BENCHMARKS.md")
	// The plain C++ step (make test builds it, as make bench does).
	cpp, _ := filepath.Abs(filepath.Join("..", "build", "bench", "cfn_step"))
	if _, err := os.Stat(cpp); err != nil {
		t.Skipf("%s not built (make build/bench/cfn_step): %v", cpp, err)
	}
	err := Run(RunOptions{
		Self: os.Args[0], Python: py, PyScript: filepath.Join("pytorch", "bench.py"), Work: dir, Cpp: cpp,
		Device: "cpu", Threads: 1, Rounds: 1,
		Rows: []Row{{Name: "t", Config: cfg, HW: 32, Batch: 2, Steps: 1}, {Name: "p", Config: cfg, HW: 32, Slices: 12, Batch: 2, Propagate: true},
			{Name: "u", Config: cfg, Batch: 2, Steps: 1, UNETR: true}, {Name: "f", Config: cfg, HW: 32, Batch: 1, Steps: -1}},
		MemorySteps: 120, MemoryConfig: cfg, Out: out, Log: t.Logf,
		GPUMemoryCmd: fakeSMI(t, "500", "500\n1524\n"), // each process "holds" 1024 MiB
	})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	for _, want := range []string{"training step", "propagation", "UNETR++ training step", "without warm-up", "peak RSS", "Memory: a 120-step",
		"| … peak GPU memory (MiB, nvidia-smi, above idle) | 1024 (1024–1024) | 1024 (1024–1024) | 1.00 |",
		"ceiling of any binding"} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("report lacks %q:\n%s", want, b)
		}
	}
	// Both CFN training rows appear twice (vs PyTorch, vs C++); the UNETR++ row once.
	for _, row := range []string{"| training step, tiny.yaml network, 32² batch 2 (samples/s) |",
		"| training step, tiny.yaml network, 32² batch 1, one step per round timed without warm-up (samples/s) |"} {
		if n := strings.Count(string(b), row); n != 2 {
			t.Fatalf("row %q appears %d times, want 2 (PyTorch and C++ tables):\n%s", row, n, b)
		}
	}
	if n := strings.Count(string(b), "UNETR++ training step"); n != 1 {
		t.Fatalf("the UNETR++ row appears %d times, want 1:\n%s", n, b)
	}
	if strings.Contains(string(b), "Incomplete") {
		t.Fatalf("a finished run's report says it is incomplete:\n%s", b)
	}
}

// A row whose two sides disagree is reported untimed, the next row still runs, and the run
// ends in an error naming the row.
func TestHarnessParityFailure(t *testing.T) {
	py := testpy.Find(t, "torch")
	t.Setenv("SLI2VOL_BENCH_SELF", "1")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "tiny.yaml")
	os.WriteFile(cfg, []byte("model: {width: 4, stages: 1, blocks_per_stage: 1, feature_dim: 8, radius: 2}\ndata: {resize_range: [32, 32], crop: 32}\n"), 0o644)
	// A "reference" that reports another loss for the row named bad.
	ref, _ := filepath.Abs(filepath.Join("pytorch", "bench.py"))
	fake := filepath.Join(dir, "fake.py")
	os.WriteFile(fake, []byte("import json, sys\nloss = 99.0 if sys.argv[2].endswith('bad') else None\n"+
		"if loss is None:\n    import runpy; sys.argv[0] = '"+ref+"'; runpy.run_path(sys.argv[0], run_name='__main__')\n"+
		"else:\n    print(json.dumps({'first_loss': loss, 'samples_per_s': 1, 'peak_rss_mib': 1}))\n"), 0o644)
	out := filepath.Join(dir, "BENCHMARKS.md")
	err := Run(RunOptions{
		Self: os.Args[0], Python: py, PyScript: fake, Work: dir, Device: "cpu", Threads: 1, Rounds: 1,
		Rows: []Row{{Name: "bad", Config: cfg, HW: 32, Batch: 2, Steps: 1}, {Name: "good", Config: cfg, HW: 32, Batch: 2, Steps: 1}},
		Out:  out, Log: t.Logf,
	})
	if err == nil || !strings.Contains(err.Error(), "parity failed for bad") {
		t.Fatalf("err %v, want a parity failure naming the row", err)
	}
	b, _ := os.ReadFile(out)
	rep := string(b)
	if !strings.Contains(rep, "not timed: bad: first loss") || strings.Count(rep, "**") != 2 || strings.Contains(rep, "Incomplete") {
		t.Fatalf("want the bad row untimed and the good one timed:\n%s", rep)
	}
}
