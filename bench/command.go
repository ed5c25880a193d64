package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/dist"
	"github.com/sli2vol/sli2vol/torchx"
)

// Command runs one of the single-measurement subcommands (prepare, train, propagate) that
// Run starts as processes; it returns the result to print (nil for prepare).
func Command(a []string) (*Result, error) {
	atoi := func(s string) int {
		v, err := strconv.Atoi(s)
		if err != nil {
			panic(&torchx.Error{Msg: fmt.Sprintf("%q is not an integer", s)})
		}
		return v
	}
	var r *Result
	if v := os.Getenv(AffinityEnv); v != "" {
		s, err := ParseAffinity(v)
		if err != nil {
			return nil, err
		}
		torchx.SetAffinityStrategy(s)
	}
	switch v := os.Getenv(ForeachEnv); v {
	case "", "auto":
	case "on":
		torchx.SetOptimizerForeach(torchx.ForeachOn)
	case "off":
		torchx.SetOptimizerForeach(torchx.ForeachOff)
	default:
		return nil, fmt.Errorf("%s=%q: want auto, on or off", ForeachEnv, v)
	}
	err := torchx.Try(func() {
		var err error
		switch {
		case len(a) == 6 && a[0] == "prepare":
			c, e := configs.Load(a[2])
			if e != nil {
				err = e
				break
			}
			_, err = Prepare(a[1], c, atoi(a[3]), atoi(a[4]), atoi(a[5]))
		case len(a) == 7 && a[0] == "launch" && a[2] == "train":
			r, err = launchTrain(atoi(a[1]), a[2:])
		case len(a) == 5 && a[0] == "train":
			torchx.SetNumThreads(atoi(a[4]))
			r, err = TrainSteps(a[1], a[2], atoi(a[3]))
		case len(a) == 4 && a[0] == "prepare-unetr":
			c, e := configs.Load(a[2])
			if e != nil {
				err = e
				break
			}
			err = PrepareUNETR(a[1], a[2], c, atoi(a[3]))
		case len(a) == 5 && a[0] == "train-unetr":
			torchx.SetNumThreads(atoi(a[4]))
			r, err = TrainUNETRSteps(a[1], a[2], atoi(a[3]))
		case (len(a) == 4 || len(a) == 5 && a[4] == "per-slice") && a[0] == "propagate":
			torchx.SetNumThreads(atoi(a[3]))
			r, err = Propagate(a[1], a[2], len(a) == 5)
		default:
			err = fmt.Errorf("usage: prepare DIR CONFIG HW BATCH SLICES | train DIR DEVICE STEPS THREADS | propagate DIR DEVICE THREADS [per-slice] | prepare-unetr DIR CONFIG BATCH | train-unetr DIR DEVICE STEPS THREADS (got %v)", a)
		}
		if err != nil {
			panic(&torchx.Error{Msg: err.Error()})
		}
	})
	return r, err
}

// AffinityEnv carries `run --affinity` to the Go processes the runner starts.
const AffinityEnv = "SLI2VOL_BENCH_AFFINITY"

// ForeachEnv (auto, on, off) picks the Go side's optimizer path (torchx.ForeachMode), to
// time one change at a time.
const ForeachEnv = "SLI2VOL_BENCH_FOREACH"

// ParseAffinity reads an affinity strategy name.
func ParseAffinity(s string) (torchx.AffinityStrategy, error) {
	switch s {
	case "auto":
		return torchx.AffinityAuto, nil
	case "rows":
		return torchx.AffinityRows, nil
	case "shifts":
		return torchx.AffinityShifts, nil
	case "unfold":
		return torchx.AffinityUnfold, nil
	}
	return 0, fmt.Errorf("affinity %q: want auto, rows, shifts or unfold", s)
}

// launchTrain runs `train` as n data-parallel processes of this binary (dist.Launch) and
// returns rank 0's result.
func launchTrain(n int, args []string) (*Result, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	code, err := dist.Launch(dist.LaunchOptions{Exe: exe, Args: args, NProc: n, NNodes: 1, Stdout: &out, Stderr: os.Stderr})
	if err != nil || code != 0 {
		return nil, fmt.Errorf("launch of %d processes: exit %d (%v)", n, code, err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var r Result
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		return nil, fmt.Errorf("launch: rank 0's output %q: %w", out.String(), err)
	}
	return &r, nil
}
