package runs

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/sli2vol/sli2vol/internal/atomicfile"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/torchx"
)

// Progress is where a run stands; a checkpoint stores it so --resume continues exactly.
type Progress struct {
	Epoch int `json:"epoch"` // current epoch
	Batch int `json:"batch"` // next batch of that epoch (of each rank's shard)
	Step  int `json:"step"`  // optimizer steps taken
	// World is the number of data-parallel processes the run trained with (0: one).
	World int `json:"world_size,omitempty"`
}

// Next is the position after the step taken at p, with perEpoch batches to an epoch.
func (p Progress) Next(perEpoch int) Progress {
	p.Step++
	p.Batch++
	if p.Batch >= perEpoch {
		p.Epoch, p.Batch = p.Epoch+1, 0
	}
	return p
}

// checkpoint entries besides the model's own ("model." + its names).
const (
	ckModel    = "model."
	ckOptim    = "__optimizer_state__"
	ckProgress = "__progress__"
)

// SaveCheckpoint writes model, optimizer state and progress into one torch.save-style file
// atomically (model weights under "model.", byte blobs as uint8 tensors).
func SaveCheckpoint(path string, m models.Module, opt *torchx.Optimizer, p Progress) error {
	sd := map[string]torchx.Tensor{}
	for k, v := range models.StateDict(m) {
		sd[ckModel+k] = v
	}
	ost := opt.State()
	sd[ckOptim] = torchx.FromUint8(ost, int64(len(ost)))
	pj, _ := json.Marshal(p)
	sd[ckProgress] = torchx.FromUint8(pj, int64(len(pj)))
	return torchx.SaveStateDict(path, sd)
}

// LoadCheckpoint restores what SaveCheckpoint wrote into m and opt.
func LoadCheckpoint(path string, m models.Module, opt *torchx.Optimizer) (Progress, error) {
	var p Progress
	sd, err := torchx.LoadStateDict(path)
	if err != nil {
		return p, err
	}
	if err := models.LoadStateDict(m, modelEntries(sd)); err != nil {
		return p, fmt.Errorf("%s: %w", path, err)
	}
	ost, ok := sd[ckOptim]
	pj, ok2 := sd[ckProgress]
	if !ok || !ok2 {
		return p, fmt.Errorf("%s: not a sli2vol checkpoint (no optimizer state or progress)", path)
	}
	if err := opt.LoadState(bytesOf(ost)); err != nil {
		return p, fmt.Errorf("%s: optimizer state: %w", path, err)
	}
	if err := json.Unmarshal(bytesOf(pj), &p); err != nil {
		return p, fmt.Errorf("%s: progress: %w", path, err)
	}
	return p, nil
}

// SaveFinal ends a run: the last checkpoint and model.pt, the final weights as a plain state
// dict.
func SaveFinal(dir string, m models.Module, opt *torchx.Optimizer, p Progress) error {
	if err := SaveCheckpoint(Path(dir, CheckpointFile), m, opt, p); err != nil {
		return err
	}
	sd, err := torchx.EncodeStateDict(models.StateDict(m))
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(Path(dir, ModelFile), sd)
}

// loadWeights reads a run folder's weights for inference: model.pt, or, for a run still
// training (or interrupted), the model entries of its checkpoint. A damaged model.pt is an
// error, not a reason to fall back on another file. It returns the file it read.
func loadWeights(dir string) (map[string]torchx.Tensor, string, error) {
	path := Path(dir, ModelFile)
	if Has(dir, ModelFile) {
		sd, err := torchx.LoadStateDict(path)
		return sd, path, err
	}
	path = Path(dir, CheckpointFile)
	if !Has(dir, CheckpointFile) {
		return nil, path, fmt.Errorf("model %s: no %s or %s (has training finished?)", dir, ModelFile, CheckpointFile)
	}
	sd, err := torchx.LoadStateDict(path)
	if err != nil {
		return nil, path, err
	}
	return modelEntries(sd), path, nil
}

// modelEntries are a checkpoint's model weights under their own names.
func modelEntries(sd map[string]torchx.Tensor) map[string]torchx.Tensor {
	model := map[string]torchx.Tensor{}
	for k, v := range sd {
		if name, ok := strings.CutPrefix(k, ckModel); ok {
			model[name] = v
		}
	}
	return model
}

func bytesOf(t torchx.Tensor) []byte { return torchx.Uint8s(t) }
