// Command sli2vol-bench is the Go side of `make bench` (see bench/run.sh):
//
//	sli2vol-bench prepare  DIR CONFIG HW BATCH SLICES
//	sli2vol-bench train    DIR DEVICE STEPS THREADS
//	sli2vol-bench launch N train DIR DEVICE STEPS THREADS   (N data-parallel processes)
//	sli2vol-bench propagate DIR DEVICE THREADS [per-slice]
//	sli2vol-bench run [--device D] [--rounds N] [--threads T] [--paper] [--out BENCHMARKS.md]
//	                  [--only ROWS] [--stream-steps N] [--stream-cases N] [--first-step-cases N]
//	                  [--trainer-steps N] [--stream-rounds N] [--big-volume-slices N]
//
// The data-streaming rows (--only stream,first-step,trainer) run bin/sli2vol train, and the
// big-volume row (--only bigvolume) bin/sli2vol segment, as child processes: no PyTorch.
//
// Each timing command prints one JSON line (bench.Result); run does the whole comparison.
// SLI2VOL_BENCH_AFFINITY (auto, rows, shifts, unfold) and SLI2VOL_BENCH_FOREACH (auto, on, off)
// select the Go side's affinity strategy and optimizer path for a single timing command.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/sli2vol/sli2vol/bench"
	"github.com/sli2vol/sli2vol/internal/testpy"
)

// The main goroutine keeps the main OS thread, where the thread count is set and the timed
// work runs (see torchx.PinThread).
func init() { runtime.LockOSThread() }

func fail(err error) {
	fmt.Fprintln(os.Stderr, "sli2vol-bench:", err)
	os.Exit(2)
}

func main() {
	a := os.Args[1:]
	if len(a) > 0 && a[0] == "run" {
		if err := run(a[1:]); err != nil {
			fail(err)
		}
		return
	}
	r, err := bench.Command(a)
	if err != nil {
		fail(err)
	}
	// In a data-parallel launch rank 0 alone reports (for every rank).
	if r != nil && (os.Getenv("RANK") == "" || os.Getenv("RANK") == "0") {
		bench.Print(r)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	device := fs.String("device", "cpu", "cpu or cuda")
	rounds := fs.Int("rounds", 5, "interleaved Go/PyTorch rounds per row")
	threads := fs.Int("threads", runtime.NumCPU(), "intra-op threads, both sides")
	paper := fs.Bool("paper", false, "also the paper-size UNETR++ row, 64×128×128 (always on CUDA)")
	out := fs.String("out", "BENCHMARKS.md", "report")
	only := fs.String("only", "", "comma-separated row names to run (train-96, train-256, propagate, propagate-512 (CUDA), 16×32×32, 64×128×128; memory, data-parallel; "+
		"stream, first-step, trainer: the data-streaming rows; bigvolume: segment through 512×512×1000; accumulator: sliding-window sums on host vs device; serve: a 512×512×300 job's acceptance; Go only); all when empty")
	streamSteps := fs.Int("stream-steps", 40, "stream row: training steps per run")
	streamCases := fs.Int("stream-cases", 64, "stream row: phantom volumes of 256×256×128 (64 MiB each decoded)")
	firstCases := fs.Int("first-step-cases", 500, "first-step row: phantom cases of 64×64×32 on disk")
	trainerSteps := fs.Int("trainer-steps", 16, "trainer row: steps of sli2vol train (the first 4 not counted)")
	streamRounds := fs.Int("stream-rounds", 1, "rounds of each data-streaming row")
	bigSlices := fs.Int("big-volume-slices", 1000, "bigvolume row: segment 512×512×N phantoms, N = this/4 and this")
	cpp := fs.String("cpp", "", "bench/cpp/cfn_step built (make bench does): the CFN rows also in plain C++ libtorch")
	affinity := fs.String("affinity", "auto", "the Go side's affinity strategy: auto, rows, shifts or unfold (torchx.AffinityStrategy)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	self, _ := os.Executable()
	root := filepath.Join(filepath.Dir(self), "..", "..")
	steps, hwProp, slices := 2, 128, 40
	if *device != "cpu" {
		steps, hwProp, slices = 20, 256, 100
		*paper = true
	}
	gpuMem := ""
	if *device != "cpu" {
		gpuMem = "nvidia-smi"
	}
	rows := benchRows(root, *device, *paper, steps, hwProp, slices)
	memSteps, dpSteps, accumulator, serveAccept := 1000, 40, 1, 1
	if *device != "cpu" || *threads < 2 {
		dpSteps = 0 // the data-parallel row splits the CPU's threads between two processes
	}
	if *only != "" {
		// Go-only rows are gated by their step (or case) counts: 0 skips one.
		rows = selectRows(*only, rows, map[string]*int{"memory": &memSteps, "data-parallel": &dpSteps,
			"stream": streamSteps, "first-step": firstCases, "trainer": trainerSteps, "bigvolume": bigSlices, "accumulator": &accumulator, "serve": &serveAccept})
	}
	py := "" // the Go-only rows run without PyTorch
	if len(rows) > 0 {
		var ok bool
		if py, ok = testpy.Lookup("torch"); !ok {
			return fmt.Errorf("no python3 with torch (apt install python3-torch)")
		}
	}
	for i := range rows {
		rows[i].Config = filepath.Clean(rows[i].Config)
	}
	if _, err := bench.ParseAffinity(*affinity); err != nil {
		return err
	}
	os.Setenv(bench.AffinityEnv, *affinity) // the Go processes the runner starts read it
	return bench.Run(bench.RunOptions{
		Self: self, Python: py, PyScript: filepath.Join(root, "bench", "pytorch", "bench.py"),
		Work: filepath.Join(root, "build", "bench", "work"), Device: *device, Threads: *threads, Rounds: *rounds,
		Rows: rows, MemorySteps: memSteps, DataParallelSteps: dpSteps, Affinity: *affinity, Cpp: *cpp, MemoryConfig: filepath.Join(root, "configs", "cpu-small.yaml"),
		Out: *out, GPUMemoryCmd: gpuMem, Recorded: filepath.Join(root, "bench", "recorded.md"),
		Sli2vol: filepath.Join(root, "bin", "sli2vol"), StreamSteps: *streamSteps, StreamCases: *streamCases,
		FirstStepCases: *firstCases, TrainerSteps: *trainerSteps, TrainerConfig: filepath.Join(root, "configs", "paper.yaml"),
		StreamRounds: *streamRounds, BigVolumeSlices: *bigSlices, Accumulator: accumulator > 0, ServeAccept: serveAccept > 0,
		Log: func(f string, a ...any) { fmt.Fprintf(os.Stderr, "bench: "+f+"\n", a...) },
	})
}

// selectRows keeps the rows named in only (in its order) and zeroes the gate of every
// Go-only row it does not name.
func selectRows(only string, rows []bench.Row, gates map[string]*int) []bench.Row {
	want := map[string]bool{}
	var kept []bench.Row
	for _, n := range strings.Split(only, ",") {
		n = strings.TrimSpace(n)
		want[n] = true
		for _, r := range rows {
			if r.Name == n {
				kept = append(kept, r)
			}
		}
	}
	for name, g := range gates {
		if !want[name] {
			*g = 0
		}
	}
	return kept
}

// benchRows are make bench's Go-vs-PyTorch rows for the device.
func benchRows(root, device string, paper bool, steps, hwProp, slices int) []bench.Row {
	paperCfg := filepath.Join(root, "configs", "paper.yaml")
	rows := []bench.Row{{Name: "train-96", Config: paperCfg, HW: 96, Batch: 4, Steps: steps}}
	if device == "cpu" {
		// The paper's 256² on two cores: about 9 s a step in Go, 24 s in PyTorch at batch 1,
		// so one timed step per round, no warm-up step (the 20-minute budget).
		rows = append(rows, bench.Row{Name: "train-256", Config: paperCfg, HW: 256, Batch: 1, Steps: -1})
	} else {
		rows = append(rows, bench.Row{Name: "train-256", Config: paperCfg, HW: 256, Batch: 4, Steps: steps})
	}
	rows = append(rows, bench.Row{Name: "propagate", Config: paperCfg, HW: hwProp, Batch: 2, Slices: slices, Propagate: true})
	if device != "cpu" { // a CT-size volume: 300 slices of 512²
		rows = append(rows, bench.Row{Name: "propagate-512", Config: paperCfg, HW: 512, Batch: 2, Slices: 300, Propagate: true})
	}
	// UNETR++: the CPU preset's size always; the paper's 64×128×128 (about 8 s a step on two
	// cores, 6 GB) with --paper or on CUDA.
	rows = append(rows, bench.Row{Name: "16×32×32", Config: filepath.Join(root, "configs", "cpu-small.yaml"), Batch: 2, Steps: 5 * steps, UNETR: true})
	if paper {
		rows = append(rows, bench.Row{Name: "64×128×128", Config: paperCfg, Batch: 2, Steps: steps, UNETR: true})
	}
	return rows
}
