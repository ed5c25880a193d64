package runs

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/internal/atomicfile"
)

// ScaleFile records the in-plane scale a correspondence-flow run was trained at, for
// infer.spacing training.
const ScaleFile = "scale.json"

// Scale is the in-plane scale training saw. Training resizes whole slices to
// data.resize_range, so a slice of H×W pixels of dy×dx mm reaches the network at
// dy·H/R × dx·W/R mm per pixel, R the midpoint of the range; MMPerPx is the median over the
// training volumes of that size's geometric mean (one number: the working grid keeps each
// test slice's aspect).
type Scale struct {
	MMPerPx float64 `json:"mm_per_px"`
	Volumes int     `json:"volumes"`     // training volumes measured
	Resize  float64 `json:"resize_side"` // R, the midpoint of data.resize_range
	Min     float64 `json:"min_mm_per_px"`
	Max     float64 `json:"max_mm_per_px"`
	// Native is the median of the volumes' own pixel size (geometric mean of the two axes),
	// before training's resize.
	Native float64 `json:"native_mm_per_px"`
}

// MeasureScale reads the geometry (headers only, for NIfTI) of each training case.
func MeasureScale(c *configs.Config, cases []data.Case) (Scale, error) {
	if len(cases) == 0 {
		return Scale{}, errors.New("scale: no training cases")
	}
	r := float64(c.Data.ResizeRange[0]+c.Data.ResizeRange[1]) / 2
	per, native := make([]float64, len(cases)), make([]float64, len(cases))
	for i, cs := range cases {
		g, err := data.ReadGeometry(cs.Image, cs.Series, c.VolumeLimits())
		if err != nil {
			return Scale{}, err
		}
		s, err := data.NewSlicer(&g, c.Data.Axis())
		if err != nil {
			return Scale{}, fmt.Errorf("%s: %w", cs.Image, err)
		}
		h, w := s.Size()
		dy, dx := s.PixelSpacing(&g)
		per[i] = math.Sqrt(dy * float64(h) / r * dx * float64(w) / r)
		native[i] = math.Sqrt(dy * dx)
		if !(per[i] > 0) || math.IsInf(per[i], 0) {
			return Scale{}, fmt.Errorf("%s: pixel spacing %g×%g mm is not usable for infer.spacing", cs.Image, dy, dx)
		}
	}
	slices.Sort(per)
	slices.Sort(native)
	return Scale{MMPerPx: median(per), Volumes: len(per), Resize: r, Min: per[0], Max: per[len(per)-1], Native: median(native)}, nil
}

// median of sorted values (the mean of the middle two for an even count).
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// WriteScale stores s in the run folder.
func WriteScale(dir string, s Scale) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(Path(dir, ScaleFile), append(b, '\n'))
}

// ReadScale reads a run folder's scale.json; a run trained before it existed has none, and
// says so.
func ReadScale(dir string) (Scale, error) {
	b, err := os.ReadFile(Path(dir, ScaleFile))
	if errors.Is(err, os.ErrNotExist) {
		return Scale{}, fmt.Errorf("model %s: no %s (trained before it was recorded): infer.spacing training or finer needs it; use infer.resize instead", dir, ScaleFile)
	}
	if err != nil {
		return Scale{}, fmt.Errorf("model %s: %w", dir, err)
	}
	var s Scale
	if err := json.Unmarshal(b, &s); err != nil || !(s.MMPerPx > 0) {
		return Scale{}, fmt.Errorf("model %s: %s is not a valid scale record", dir, ScaleFile)
	}
	return s, nil
}
