package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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
	MemoryConfig           string
	Out                    string // BENCHMARKS.md
	Recorded               string // appended unchanged (recorded GPU runs)
	Log                    func(format string, a ...any)
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

func runJSON(name string, args ...string) (*Result, error) {
	var out, errb bytes.Buffer
	c := exec.Command(name, args...)
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Run(); err != nil {
		return nil, fmt.Errorf("%s %v: %v: %s", filepath.Base(name), args, err, strings.TrimSpace(errb.String()))
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var r Result
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		return nil, fmt.Errorf("%s: output %q: %v", filepath.Base(name), out.String(), err)
	}
	return &r, nil
}

// Run prepares each row, checks that Go and PyTorch compute the same thing (first training
// loss to 1e-4 relative; propagated voxel counts to 0.5 %) — aborting before any timing if
// not — then times Rounds interleaved Go/PyTorch rounds and writes the report.
func Run(o RunOptions) error {
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
	pyVer, _ := exec.Command(o.Python, "-c", "import torch; print(torch.__version__)").Output()
	fmt.Fprintf(&md, "# Benchmarks\n\nWritten by `make bench` on %s: %s, %d cores (%s); device %s; %s intra-op threads on both sides; "+
		"libtorch %s under sli2vol, PyTorch %s for the reference; %d interleaved rounds, median (min–max).\n\n",
		time.Now().UTC().Format("2006-01-02"), cpu, runtime.NumCPU(), host, o.Device, th, torchx.LibtorchVersion(),
		strings.TrimSpace(string(pyVer)), o.Rounds)
	md.WriteString("Go runs the trainer's own `train.Stepper` and infer's `Propagator`; PyTorch runs the repo's reference " +
		"(`bench/pytorch/sli2vol_ref.py`, affinity by `F.unfold` as in the published code) on the same weights, batch and volume. " +
		"UNETR++ rows: Go's `train.SegStepper` vs `bench/pytorch/unetrpp_ref.py` with the same loss (Dice + CE, deep supervision), " +
		"optimizer and gradient clipping, dropout off on both sides. " +
		"Each row's outputs are checked equal before it is timed.\n\n")
	md.WriteString("| row | Go | PyTorch | Go/PyTorch (median) |\n|---|---|---|---|\n")
	for _, r := range o.Rows {
		dir := filepath.Join(o.Work, r.Name)
		o.Log("prepare %s", r.Name)
		prep := []string{"prepare", dir, r.Config, fmt.Sprint(r.HW), fmt.Sprint(r.Batch), fmt.Sprint(r.Slices)}
		trainCmd := "train"
		if r.UNETR {
			prep, trainCmd = []string{"prepare-unetr", dir, r.Config, fmt.Sprint(r.Batch)}, "train-unetr"
		}
		if _, err := runJSONOrNil(o.Self, prep...); err != nil {
			return err
		}
		goArgs := []string{trainCmd, dir, o.Device, fmt.Sprint(r.Steps), th}
		pyArgs := []string{o.PyScript, trainCmd, dir, o.Device, fmt.Sprint(r.Steps), th}
		if r.Propagate {
			goArgs = []string{"propagate", dir, o.Device, th}
			pyArgs = []string{o.PyScript, "propagate", dir, o.Device, th}
		}
		var gv, pv, gm, pm []float64
		for i := 0; i < o.Rounds; i++ {
			g, err := runJSON(o.Self, goArgs...)
			if err != nil {
				return err
			}
			p, err := runJSON(o.Python, pyArgs...)
			if err != nil {
				return err
			}
			// Parity on the first round, before any figure is kept: the same first loss (one
			// step on the same weights and batch) or the same propagated voxels.
			if i == 0 {
				if err := checkParity(r, g, p); err != nil {
					return err
				}
				if r.Propagate {
					o.Log("%s: parity ok (labelled voxels Go %d, PyTorch %d)", r.Name, g.Labelled, p.Labelled)
				} else {
					o.Log("%s: parity ok (first loss Go %.7g, PyTorch %.7g)", r.Name, g.FirstLoss, p.FirstLoss)
				}
			}
			gs, ps := g.SamplesPerS, p.SamplesPerS
			if r.Propagate {
				gs, ps = g.SlicesPerS, p.SlicesPerS
			}
			gv, pv, gm, pm = append(gv, gs), append(pv, ps), append(gm, g.PeakRSSMiB), append(pm, p.PeakRSSMiB)
			o.Log("  round %d: Go %.3g, PyTorch %.3g", i+1, gs, ps)
		}
		unit := "samples/s"
		cfg := filepath.Base(r.Config)
		what := fmt.Sprintf("training step, %s network, %d² batch %d", cfg, r.HW, r.Batch)
		if r.Steps < 0 {
			what += ", one step per round timed without warm-up"
		}
		if r.Propagate {
			unit = "slices/s"
			what = fmt.Sprintf("propagation, %s network, %d slices of %d²", cfg, r.Slices, r.HW)
		}
		if r.UNETR {
			unit = "patches/s"
			what = fmt.Sprintf("UNETR++ training step, %s unetr section (patch %s), batch %d", cfg, r.Name, r.Batch)
		}
		G, P := summarize(gv), summarize(pv)
		fmt.Fprintf(&md, "| %s (%s) | %s | %s | **%.2f** |\n", what, unit, G, P, G.med/P.med)
		GM, PM := summarize(gm), summarize(pm)
		fmt.Fprintf(&md, "| … peak RSS (MiB) | %s | %s | %.2f |\n", GM, PM, GM.med/PM.med)
	}
	if o.MemorySteps > 0 {
		dir := filepath.Join(o.Work, "memory")
		if _, err := runJSONOrNil(o.Self, "prepare", dir, o.MemoryConfig, "64", "4", "12"); err != nil {
			return err
		}
		o.Log("memory: %d Go training steps", o.MemorySteps)
		g, err := runJSON(o.Self, "train", dir, o.Device, fmt.Sprint(o.MemorySteps), th)
		if err != nil {
			return err
		}
		growth := (g.RSSAtEnd - g.RSSAtStep100) / g.RSSAtStep100 * 100
		fmt.Fprintf(&md, "\nMemory: a %d-step Go training run (%s network, 64² batch 4): RSS %.1f MiB after step 100, %.1f MiB after step %d "+
			"(%+.2f %%; the bound is 5 %%).\n", o.MemorySteps, filepath.Base(o.MemoryConfig), g.RSSAtStep100, g.RSSAtEnd, o.MemorySteps, growth)
		if math.Abs(growth) >= 5 {
			return fmt.Errorf("memory: RSS grew %.1f %% between step 100 and %d", growth, o.MemorySteps)
		}
	}
	if o.Recorded != "" {
		if b, err := os.ReadFile(o.Recorded); err == nil {
			md.WriteString("\n")
			md.Write(b)
		}
	}
	return os.WriteFile(o.Out, []byte(md.String()), 0o644)
}

// checkParity: the two sides did the same work, or no figure of the row is reported.
func checkParity(r Row, g, p *Result) error {
	if r.Propagate {
		if d := math.Abs(float64(g.Labelled-p.Labelled)) / math.Max(1, float64(p.Labelled)); d > 0.005 {
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
		return nil, fmt.Errorf("%s %v: %v: %s", filepath.Base(name), args, err, strings.TrimSpace(errb.String()))
	}
	return nil, nil
}
