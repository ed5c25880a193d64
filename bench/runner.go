package bench

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sli2vol/sli2vol/torchx"
)

// Row is one benchmark setting compared Go vs PyTorch.
type Row struct {
	Name, Config  string
	HW, Batch     int
	Slices, Steps int // Steps −1: one step, timed (rows too slow for a warm-up step)
	Propagate     bool
	UNETR         bool // a UNETR++ training step (Config's unetr section)
}

// RunOptions drive Run.
type RunOptions struct {
	Self, Python, PyScript string // the sli2vol-bench binary, python3, bench/pytorch/bench.py
	Work                   string
	Device                 string
	Threads, Rounds        int
	Rows                   []Row
	MemorySteps            int // the long Go-only run for RSS growth (0: skip)
	DataParallelSteps      int // the 2-process × T/2-thread CFN row against 1 × T (0: skip)
	MemoryConfig           string
	Out                    string // BENCHMARKS.md
	Recorded               string // appended unchanged (recorded GPU runs)
	GPUMemoryCmd           string // nvidia-smi on CUDA: each side's peak GPU memory ("" skips)
	Affinity               string // the Go side's affinity strategy, for the report ("" = auto)
	Cpp                    string // bench/cpp/cfn_step: CFN training rows also in plain C++ ("" skips)
	// The data-streaming rows (stream.go), which run `sli2vol train` (Sli2vol) itself:
	Sli2vol        string // bin/sli2vol
	StreamSteps    int    // the memory-bound row: steps per training run (0: skip)
	StreamCases    int    // its phantom volumes of 256×256×128
	FirstStepCases int    // the time-to-first-step row: small phantom cases on disk (0: skip)
	TrainerSteps   int    // the whole trainer beside the train-96 stepper: steps (0: skip)
	TrainerConfig  string // that row's network (paper.yaml, as train-96)
	StreamRounds   int    // rounds of each streaming row (each run is a whole training process)
	// BigVolumeSlices: the big-volume row segments 512×512×N phantoms for N = this/4 and this
	// (bigvolume.go; 0: skip).
	BigVolumeSlices int
	// Accumulator runs the host-vs-device sliding-window accumulator row (accumulator.go).
	Accumulator bool
	// ServeAccept runs the server's job-acceptance row (serveaccept.go).
	ServeAccept bool
	Log         func(format string, a ...any)
}

type stats struct{ med, min, max float64 }

func summarize(v []float64) stats {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stats{m, s[0], s[len(s)-1]}
}

func (s stats) String() string {
	f := "%.3g (%.3g–%.3g)"
	if s.med >= 100 {
		f = "%.0f (%.0f–%.0f)"
	}
	return fmt.Sprintf(f, s.med, s.min, s.max)
}

func runJSON(name string, args ...string) (*Result, error) { return runJSONEnv(nil, name, args...) }

// runJSONEnv runs name with env added to this process's environment.
func runJSONEnv(env []string, name string, args ...string) (*Result, error) {
	var out, errb bytes.Buffer
	c := exec.Command(name, args...)
	if env != nil {
		c.Env = append(os.Environ(), env...)
	}
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Run(); err != nil {
		return nil, fmt.Errorf("%s %v: %w: %s", filepath.Base(name), args, err, strings.TrimSpace(errb.String()))
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var r Result
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		return nil, fmt.Errorf("%s: output %q: %w", filepath.Base(name), out.String(), err)
	}
	return &r, nil
}

// Run prepares each row, checks that Go and PyTorch compute the same thing (first training
// loss to 1e-4 relative; propagated voxel counts to 0.5 %) — aborting before any timing if
// not — then times Rounds interleaved Go/PyTorch rounds and writes the report.
func Run(o RunOptions) error {
	var md strings.Builder
	md.WriteString(reportHeader(o))
	if len(o.Rows) > 0 {
		md.WriteString("| row | Go | PyTorch | Go/PyTorch (median) |\n|---|---|---|---|\n")
	}
	gpu := newGPUMemory(o.GPUMemoryCmd)
	if gpu != nil {
		if _, err := exec.LookPath(o.GPUMemoryCmd); err != nil {
			gpu = nil
		}
	}
	var failed []string
	var cpp strings.Builder // Go beside the same step in plain C++ libtorch
	for _, r := range o.Rows {
		if err := runRow(&md, &cpp, o, r, gpu); err != nil {
			var pe parityError
			if !errors.As(err, &pe) {
				return err
			}
			// Not the same work: the row is reported untimed and the others still run.
			o.Log("%v", err)
			fmt.Fprintf(&md, "| %s | not timed: %v | | — |\n", r.describe(), err)
			failed = append(failed, r.Name)
		}
		// A run cut short (a device lease, a timeout) still leaves the rows it finished.
		if err := writeReport(o.Out, md.String()+cppSection(&cpp)+"\n_Incomplete: the run stopped before the remaining rows._\n"); err != nil {
			return err
		}
	}
	md.WriteString(cppSection(&cpp))
	if err := memoryCheck(o, &md); err != nil {
		return err
	}
	if err := dataParallelRow(o, &md); err != nil {
		return err
	}
	if err := streamRows(o, &md); err != nil {
		return err
	}
	if o.BigVolumeSlices > 0 {
		if err := bigVolumeRow(o, &md); err != nil {
			return err
		}
	}
	if o.ServeAccept {
		if err := serveAcceptRow(o, &md); err != nil {
			return err
		}
	}
	if o.Accumulator {
		o.Log("accumulator: 42 classes, 256×256×200, host then device sums")
		torchx.SetNumThreads(o.Threads) // this row runs in the runner's own process
		r, err := AccumulatorRow(IssueAccumulatorOptions(o.Device))
		if err != nil {
			return fmt.Errorf("accumulator: %w", err)
		}
		md.WriteString("\n" + r.Markdown())
	}
	if o.Recorded != "" && len(o.Rows) > 0 { // recorded comparisons go with the comparison
		if b, err := os.ReadFile(o.Recorded); err == nil {
			md.WriteString("\n")
			md.Write(b)
		}
	}
	if err := writeReport(o.Out, md.String()); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("parity failed for %s: those rows are not timed (see %s)", strings.Join(failed, ", "), o.Out)
	}
	return nil
}

// reportHeader is the report's opening: machine, versions, threads and what each side runs.
func reportHeader(o RunOptions) string {
	th := fmt.Sprint(o.Threads)
	var md strings.Builder
	host, _ := os.Hostname()
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	date := time.Now().UTC().Format("2006-01-02")
	if len(o.Rows) == 0 { // Go-only rows (memory, data-parallel, streaming): no comparison to describe
		fmt.Fprintf(&md, "# Benchmarks\n\nWritten by `sli2vol-bench run` on %s: %s, %d cores (%s); device %s; %s intra-op threads; libtorch %s.\n",
			date, cpu, runtime.NumCPU(), host, o.Device, th, torchx.LibtorchVersion())
		return md.String()
	}
	pyVer, _ := exec.Command(o.Python, "-c", "import torch; print(torch.__version__)").Output()
	fmt.Fprintf(&md, "# Benchmarks\n\nWritten by `make bench` on %s: %s, %d cores (%s); device %s; %s intra-op threads on both sides; "+
		"libtorch %s under sli2vol, PyTorch %s for the reference; %d interleaved rounds, median (min–max).\n\n",
		date, cpu, runtime.NumCPU(), host, o.Device, th, torchx.LibtorchVersion(), strings.TrimSpace(string(pyVer)), o.Rounds)
	md.WriteString("Go runs the trainer's own `train.Stepper` and infer's `Propagator`; PyTorch runs the repo's reference " +
		"(`bench/pytorch/sli2vol_ref.py`, affinity by `F.unfold` as in the published code) on the same weights, batch and volume. " +
		"UNETR++ rows: Go's `train.SegStepper` vs `bench/pytorch/unetrpp_ref.py` with the same loss (Dice + CE, deep supervision), " +
		"optimizer and gradient clipping, dropout off on both sides. " +
		"Each row's outputs are checked equal before it is timed. " +
		fmt.Sprintf("Go's affinity strategy: %s (auto = per window row on CUDA for maps of up to 2^23 elements, per displacement otherwise).\n\n", cmp.Or(o.Affinity, "auto")))
	return md.String()
}

// memoryCheck is the long-run memory row: RSS may not grow by 5 % between step 100 and
// the last step of a MemorySteps-step Go training run.
func memoryCheck(o RunOptions, md *strings.Builder) error {
	th := fmt.Sprint(o.Threads)
	if o.MemorySteps <= 0 {
		return nil
	}
	dir := filepath.Join(o.Work, "memory")
	if _, err := runJSONOrNil(o.Self, "prepare", dir, o.MemoryConfig, "48", "4", "12"); err != nil {
		return err
	}
	o.Log("memory: %d Go training steps", o.MemorySteps)
	// glibc's malloc thresholds are fixed for this run: with its default, dynamic ones the
	// RSS of the same run moved between −11 % and +3.5 % from run to run (freed heap pages
	// kept or returned at random moments); fixed, blocks of 1 MiB and more go back to the
	// kernel when freed, so RSS follows the memory actually held. Setting the variable also
	// turns off torchx's own policy (keep freed heap for the next step), under which RSS
	// stays at its peak and a slow leak would first fill that kept space unseen.
	g, err := runJSONEnv([]string{"MALLOC_MMAP_THRESHOLD_=1048576"}, o.Self, "train", dir, o.Device, fmt.Sprint(o.MemorySteps), th)
	if err != nil {
		return err
	}
	growth := (g.RSSAtEnd - g.RSSAtStep100) / g.RSSAtStep100 * 100
	fmt.Fprintf(md, "\nMemory: a %d-step Go training run (%s network, 48² batch 4, glibc malloc's mmap threshold fixed at 1 MiB): "+
		"RSS %.1f MiB at step 100, %.1f MiB at step %d (medians of steps 91–110 and of the last 20; %+.2f %%; the bound is 5 %%).\n", o.MemorySteps, filepath.Base(o.MemoryConfig), g.RSSAtStep100, g.RSSAtEnd, o.MemorySteps, growth)
	if math.Abs(growth) >= 5 {
		return fmt.Errorf("memory: RSS grew %.1f %% between step 100 and %d", growth, o.MemorySteps)
	}
	return nil
}

// dataParallelRow times the CFN training step (cpu-small network, 48² batch 4 per process)
// on one process with all Threads against two processes with half each, data-parallel over
// Gloo with DDP's gradient averaging: global samples/s and their ratio (the scaling
// efficiency of the same cores), in interleaved rounds.
func dataParallelRow(o RunOptions, md *strings.Builder) error {
	if o.DataParallelSteps <= 0 {
		return nil
	}
	dir := filepath.Join(o.Work, "data-parallel")
	if _, err := runJSONOrNil(o.Self, "prepare", dir, o.MemoryConfig, "48", "4", "12"); err != nil {
		return err
	}
	steps, half := fmt.Sprint(o.DataParallelSteps), fmt.Sprint(max(1, o.Threads/2))
	var one, two, ddpMs, localMs, arMs, overlap []float64
	for i := 0; i < o.Rounds; i++ {
		a, err := runJSON(o.Self, "train", dir, "cpu", steps, fmt.Sprint(o.Threads))
		if err != nil {
			return err
		}
		b, err := runJSON(o.Self, "launch", "2", "train", dir, "cpu", steps, half)
		if err != nil {
			return err
		}
		one, two = append(one, a.SamplesPerS), append(two, b.SamplesPerS)
		ddpMs, localMs, arMs = append(ddpMs, b.StepDDPMs), append(localMs, b.StepLocalMs), append(arMs, b.AllReduceMs)
		overlap = append(overlap, 100*b.OverlapFraction)
		o.Log("data-parallel round %d: 1×%d threads %.3g, 2×%s threads %.3g samples/s", i+1, o.Threads, a.SamplesPerS, half, b.SamplesPerS)
	}
	A, B := summarize(one), summarize(two)
	fmt.Fprintf(md, "\nData-parallel training on the CPU (Gloo, DDP's bucketed all-reduce during backward; %s network, 48² batch 4 "+
		"per process, %s steps per round, global samples/s):\n\n| setting | samples/s | vs one process |\n|---|---|---|\n"+
		"| 1 process × %d threads | %s | 1 |\n| 2 processes × %s threads | %s | **%.2f** |\n",
		filepath.Base(o.MemoryConfig), steps, o.Threads, A, half, B, B.med/A.med)
	fmt.Fprintf(md, "\nThe gradient all-reduce against the backward pass (2 processes, ms per step, medians): step with DDP %s, "+
		"the same step without communication %s (DDP's whole cost: %.1f ms), all-reducing every gradient alone (one flat "+
		"buffer) %s; share of that all-reduce hidden behind the backward pass: %s %% (the Reducer launches each bucket's "+
		"all-reduce from autograd hooks as its gradients become ready; 0 when DDP's other costs, such as copying gradients "+
		"into buckets and broadcasting buffers, exceed the all-reduce).\n",
		summarize(ddpMs), summarize(localMs), summarize(ddpMs).med-summarize(localMs).med, summarize(arMs), summarize(overlap))
	return nil
}

// parityError: Go and PyTorch did not compute the same thing, so the row is not timed.
type parityError struct{ msg string }

func (e parityError) Error() string { return e.msg }

func (r Row) describe() string {
	cfg := filepath.Base(r.Config)
	switch {
	case r.Propagate:
		return fmt.Sprintf("propagation, %s network, %d slices of %d² (slices/s)", cfg, r.Slices, r.HW)
	case r.UNETR:
		return fmt.Sprintf("UNETR++ training step, %s unetr section (patch %s), batch %d (patches/s)", cfg, r.Name, r.Batch)
	case r.Steps < 0:
		return fmt.Sprintf("training step, %s network, %d² batch %d, one step per round timed without warm-up (samples/s)", cfg, r.HW, r.Batch)
	}
	return fmt.Sprintf("training step, %s network, %d² batch %d (samples/s)", cfg, r.HW, r.Batch)
}

// cppSection is the table of Go beside the plain C++ step ("" when no row ran it).
func cppSection(rows *strings.Builder) string {
	if rows.Len() == 0 {
		return ""
	}
	return "\nThe ceiling of any binding: the same CFN training step written directly in C++ against the same libtorch " +
		"(`bench/cpp/cfn_step.cc`: the same operators in the same order but for batch norm's unread num_batches_tracked counter, the same fused affinity, " +
		"the same optimizer (torchx's AdamW: multi-tensor on CUDA), the same host allocator settings, the same weights and batch; " +
		"its first loss is checked against Go's), timed in the same interleaved rounds.\n\n" +
		"| row | Go | C++ | Go/C++ (median) |\n|---|---|---|---|\n" + rows.String()
}

// runRow prepares one row, checks parity on the first round and appends the row's lines.
func runRow(md, cppMD *strings.Builder, o RunOptions, r Row, gpu *gpuMemory) error {
	th := fmt.Sprint(o.Threads)
	dir, goArgs, pyArgs, err := prepareRow(o, r)
	if err != nil {
		return err
	}
	var gv, pv, gm, pm, gg, pg, cv, cm []float64
	var parity string
	var before perSliceSide
	withCpp := o.Cpp != "" && !r.Propagate && !r.UNETR
	for i := 0; i < o.Rounds; i++ {
		g, gGPU, err := runMeasured(gpu, o.Self, goArgs...)
		if err != nil {
			return err
		}
		p, pGPU, err := runMeasured(gpu, o.Python, pyArgs...)
		if err != nil {
			return err
		}
		// Parity on the first round, before any figure is kept: the same first loss (one
		// step on the same weights and batch) or the same propagated voxels.
		if i == 0 {
			if err := checkParity(r, o.Device, g, p); err != nil {
				return parityError{err.Error()}
			}
			parity = parityLine(r, g, p)
			o.Log("%s: parity ok (%s)", r.Name, parity)
		}
		gs, ps := g.SamplesPerS, p.SamplesPerS
		if r.Propagate {
			gs, ps = g.SlicesPerS, p.SlicesPerS
		}
		gv, pv, gm, pm = append(gv, gs), append(pv, ps), append(gm, g.PeakRSSMiB), append(pm, p.PeakRSSMiB)
		gg, pg = append(gg, gGPU), append(pg, pGPU)
		if r.Propagate {
			if err := before.run(gpu, o, goArgs, g, i); err != nil {
				return err
			}
		}
		if withCpp {
			c, err := runJSON(o.Cpp, dir, o.Device, fmt.Sprint(r.Steps), th)
			if err != nil {
				return err
			}
			if i == 0 {
				if d := math.Abs(c.FirstLoss-g.FirstLoss) / math.Abs(g.FirstLoss); d > 1e-4 || math.IsNaN(d) {
					return parityError{fmt.Sprintf("%s: first loss Go %.7g vs C++ %.7g: not the same computation, no timing", r.Name, g.FirstLoss, c.FirstLoss)}
				}
			}
			cv, cm = append(cv, c.SamplesPerS), append(cm, c.PeakRSSMiB)
			o.Log("  round %d: Go %.3g, PyTorch %.3g, C++ %.3g", i+1, gs, ps, c.SamplesPerS)
			continue
		}
		o.Log("  round %d: Go %.3g, PyTorch %.3g", i+1, gs, ps)
	}
	G, P := summarize(gv), summarize(pv)
	fmt.Fprintf(md, "| %s | %s | %s | **%.2f** |\n", r.describe(), G, P, G.med/P.med)
	GM, PM := summarize(gm), summarize(pm)
	fmt.Fprintf(md, "| … peak RSS (MiB) | %s | %s | %.2f |\n", GM, PM, GM.med/PM.med)
	if gpu != nil {
		GG, PG := summarize(gg), summarize(pg)
		fmt.Fprintf(md, "| … peak GPU memory (MiB, nvidia-smi, above idle) | %s | %s | %.2f |\n", GG, PG, GG.med/PG.med)
	}
	fmt.Fprintf(md, "| … parity (round 1) | %s | | |\n", parity)
	if r.Propagate {
		before.report(md, G, gpu != nil)
	}
	if withCpp {
		C, CM := summarize(cv), summarize(cm)
		fmt.Fprintf(cppMD, "| %s | %s | %s | **%.2f** |\n", r.describe(), G, C, G.med/C.med)
		fmt.Fprintf(cppMD, "| … peak RSS (MiB) | %s | %s | %.2f |\n", GM, CM, GM.med/CM.med)
	}
	return nil
}

// prepareRow writes the row's weights and data under o.Work and returns that folder and the
// Go and PyTorch command lines of one round.
func prepareRow(o RunOptions, r Row) (dir string, goArgs, pyArgs []string, err error) {
	th := fmt.Sprint(o.Threads)
	dir = filepath.Join(o.Work, r.Name)
	o.Log("prepare %s", r.Name)
	prep := []string{"prepare", dir, r.Config, fmt.Sprint(r.HW), fmt.Sprint(r.Batch), fmt.Sprint(r.Slices)}
	cmd := "train"
	if r.UNETR {
		prep, cmd = []string{"prepare-unetr", dir, r.Config, fmt.Sprint(r.Batch)}, "train-unetr"
	}
	if _, err := runJSONOrNil(o.Self, prep...); err != nil {
		return "", nil, nil, err
	}
	if r.Propagate {
		return dir, []string{"propagate", dir, o.Device, th}, []string{o.PyScript, "propagate", dir, o.Device, th}, nil
	}
	return dir, []string{cmd, dir, o.Device, fmt.Sprint(r.Steps), th}, []string{o.PyScript, cmd, dir, o.Device, fmt.Sprint(r.Steps), th}, nil
}

// parityLine is what the first round found equal.
func parityLine(r Row, g, p *Result) string {
	if r.Propagate {
		return fmt.Sprintf("labelled voxels Go %d, PyTorch %d", g.Labelled, p.Labelled)
	}
	return fmt.Sprintf("first loss Go %.7g, PyTorch %.7g", g.FirstLoss, p.FirstLoss)
}

// writeReport replaces path atomically: a reader never sees half a report.
func writeReport(path, text string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// runMeasured runs one side, sampling its GPU memory when gpu is set (NaN otherwise).
func runMeasured(gpu *gpuMemory, name string, args ...string) (*Result, float64, error) {
	if gpu == nil {
		r, err := runJSON(name, args...)
		return r, math.NaN(), err
	}
	var r *Result
	peak, err := gpu.during(func() (e error) { r, e = runJSON(name, args...); return })
	return r, peak, err
}

// checkParity: the two sides did the same work, or no figure of the row is reported.
// On a GPU, propagation gets 2 %: float sums run in another order there (our affinity vs
// unfold), and a voxel flipped at a border is carried on through the next 50 slices; the
// CPU stays at 0.5 %.
func checkParity(r Row, device string, g, p *Result) error {
	if r.Propagate {
		tol := 0.005
		if device != "cpu" {
			tol = 0.02
		}
		if d := math.Abs(float64(g.Labelled-p.Labelled)) / math.Max(1, float64(p.Labelled)); d > tol {
			return fmt.Errorf("%s: Go labelled %d voxels, PyTorch %d: not the same work, no timing", r.Name, g.Labelled, p.Labelled)
		}
		return nil
	}
	if d := math.Abs(g.FirstLoss-p.FirstLoss) / math.Abs(p.FirstLoss); d > 1e-4 || math.IsNaN(d) {
		return fmt.Errorf("%s: first loss Go %.7g vs PyTorch %.7g (rel %.2g): not the same computation, no timing", r.Name, g.FirstLoss, p.FirstLoss, d)
	}
	return nil
}

func runJSONOrNil(name string, args ...string) (*Result, error) {
	c := exec.Command(name, args...)
	var errb bytes.Buffer
	c.Stderr = &errb
	if err := c.Run(); err != nil {
		return nil, fmt.Errorf("%s %v: %w: %s", filepath.Base(name), args, err, strings.TrimSpace(errb.String()))
	}
	return nil, nil
}

// perSliceSide is Go's per-slice propagation (the path before chunked encoding, kept as the
// reference) in the same interleaved rounds: the row's "before".
type perSliceSide struct{ v, rss, gpu []float64 }

// run times one round; on the first it checks that both Go paths labelled the same voxels
// (to 0.01 %, batched convolutions may round differently).
func (b *perSliceSide) run(gpu *gpuMemory, o RunOptions, goArgs []string, chunked *Result, round int) error {
	r, g, err := runMeasured(gpu, o.Self, append(slices.Clone(goArgs), "per-slice")...)
	if err != nil {
		return err
	}
	if d := math.Abs(float64(r.Labelled - chunked.Labelled)); round == 0 && d > 1e-4*float64(max(1, r.Labelled)) {
		return parityError{fmt.Sprintf("propagation: the chunked path labelled %d voxels, the per-slice path %d", chunked.Labelled, r.Labelled)}
	}
	b.v, b.rss, b.gpu = append(b.v, r.SlicesPerS), append(b.rss, r.PeakRSSMiB), append(b.gpu, g)
	o.Log("  round %d: Go per-slice %.3g", round+1, r.SlicesPerS)
	return nil
}

func (b *perSliceSide) report(md *strings.Builder, chunked stats, gpu bool) {
	S, M := summarize(b.v), summarize(b.rss)
	fmt.Fprintf(md, "| … Go per-slice path (before chunked encoding; last column: Go ÷ this) | %s | | **%.2f** |\n", S, chunked.med/S.med)
	fmt.Fprintf(md, "| … its peak RSS (MiB) | %s | | |\n", M)
	if gpu {
		fmt.Fprintf(md, "| … its peak GPU memory (MiB) | %s | | |\n", summarize(b.gpu))
	}
}
