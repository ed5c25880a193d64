package infer

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/torchx"
)

// SegNet is a trained UNETR++ with what prediction needs besides its weights.
type SegNet struct {
	Cfg     *configs.Config
	Model   *models.UNETRPP
	Classes data.ClassMap
	Device  string
	Log     io.Writer // sliding-window progress; nil: quiet
}

// Window is the sliding-window predictor the config asks for.
func (n *SegNet) Window() SlidingWindow {
	u := n.Cfg.UNETR
	return SlidingWindow{Patch: u.PatchSize, Overlap: u.Overlap, Mirror: u.TestMirror, Batch: u.WindowBatch, Device: n.Device,
		MaxDeviceAccumulatorBytes: int64(u.MaxDeviceAccumulatorGB * 1e9), Log: n.Log}
}

// PredictImage labels img (array order, label ids) by sliding-window prediction in the
// slice order the config gives, the intensities windowed as at training.
func (n *SegNet) PredictImage(img *data.Image) ([]int32, error) {
	s, err := data.NewSlicer(&img.Geometry, n.Cfg.Data.Axis())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", img.Source, err)
	}
	norm, err := data.NewNormalizer(n.Cfg.Data.IntensitySettings(), img.Data)
	if err != nil {
		return nil, err
	}
	v := data.SegImage(img, s, norm.Test())
	if err := torchx.Try(func() { models.To(n.Model, n.Device) }); err != nil {
		return nil, err
	}
	models.SetTraining(n.Model, false)
	lbl, err := n.Window().Predict(v, data.SegShape(s), len(n.Classes.IDs), func(x torchx.Tensor) torchx.Tensor {
		return n.Model.Forward(x, false)[0]
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", img.Source, err)
	}
	n.Classes.ToIDs(lbl)
	return data.FromSliceOrder(s, lbl), nil
}

// RefinePseudoLabels predicts every training case of ds and writes OUT/labelsTr/ID.nii.gz
// on the image's grid: §3.2's refined PLs. With ranks, each process predicts its share.
func (n *SegNet) RefinePseudoLabels(ds *data.Dataset, out string, o data.WriteOptions, log func(string), ranks Ranks) error {
	cases := ds.Split("train")
	if len(cases) == 0 {
		return fmt.Errorf("dataset %s: no training cases", ds.Root)
	}
	if err := os.MkdirAll(filepath.Join(out, "labelsTr"), 0o755); err != nil {
		return fmt.Errorf("refine: %w", err)
	}
	for i, c := range cases {
		if !mine(ranks, i) {
			continue
		}
		path := filepath.Join(out, "labelsTr", c.ID+".nii.gz")
		img, err := c.LoadImage(n.Cfg.VolumeLimits())
		if err != nil {
			return err
		}
		if err := data.CheckOutput(path, &img.Geometry, o); err != nil {
			return err
		}
		lbl, err := n.PredictImage(img)
		if err != nil {
			return err
		}
		if err := data.WriteLabels(path, lbl, &img.Geometry, o); err != nil {
			return err
		}
		if log != nil {
			log(fmt.Sprintf("refined %s → %s", c.ID, path))
		}
	}
	if ranks != nil {
		// Every rank's cases are written before rank 0 marks the set complete.
		return ranks.Barrier()
	}
	return nil
}
