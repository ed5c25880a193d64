package bench

import (
	"fmt"
	"strconv"

	"github.com/sli2vol/sli2vol/configs"
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
		case len(a) == 4 && a[0] == "propagate":
			torchx.SetNumThreads(atoi(a[3]))
			r, err = Propagate(a[1], a[2])
		default:
			err = fmt.Errorf("usage: prepare DIR CONFIG HW BATCH SLICES | train DIR DEVICE STEPS THREADS | propagate DIR DEVICE THREADS | prepare-unetr DIR CONFIG BATCH | train-unetr DIR DEVICE STEPS THREADS (got %v)", a)
		}
		if err != nil {
			panic(&torchx.Error{Msg: err.Error()})
		}
	})
	return r, err
}
