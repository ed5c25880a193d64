package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/internal/atomicfile"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/torchx"
)

// A run folder holds what a training run produces:
//
//	config.yaml     the effective config the run trains with
//	checkpoint.pt   the last checkpoint: model weights, optimizer state, progress
//	model.pt        the final weights (a PyTorch state dict), written at the end
//	metrics.jsonl   one JSON object per logged step
const (
	ConfigFile     = "config.yaml"
	CheckpointFile = "checkpoint.pt"
	ModelFile      = "model.pt"
	MetricsFile    = "metrics.jsonl"
)

// Progress is where a run stands; a checkpoint stores it so --resume continues exactly.
type Progress struct {
	Epoch int `json:"epoch"` // current epoch
	Batch int `json:"batch"` // next batch of that epoch
	Step  int `json:"step"`  // optimizer steps taken
}

// checkpoint entries besides the model's own ("model." + its names).
const (
	ckOptim    = "__optimizer_state__"
	ckProgress = "__progress__"
)

// SaveCheckpoint writes model, optimizer state and progress into one torch.save-style file
// atomically (model weights under "model.", byte blobs as uint8 tensors).
func SaveCheckpoint(path string, m models.Module, opt *torchx.Optimizer, p Progress) error {
	sd := map[string]torchx.Tensor{}
	for k, v := range models.StateDict(m) {
		sd["model."+k] = v
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
	model := map[string]torchx.Tensor{}
	for k, v := range sd {
		if strings.HasPrefix(k, "model.") {
			model[strings.TrimPrefix(k, "model.")] = v
		}
	}
	if err := models.LoadStateDict(m, model); err != nil {
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
		return p, fmt.Errorf("%s: progress: %v", path, err)
	}
	return p, nil
}

func bytesOf(t torchx.Tensor) []byte {
	v := torchx.Int64s(t)
	b := make([]byte, len(v))
	for i, x := range v {
		b[i] = byte(x)
	}
	return b
}

// WriteRunConfig stores the effective config in the run folder.
func WriteRunConfig(dir string, c *configs.Config) error {
	b, err := c.YAML()
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, ConfigFile), b)
}

// LoadRun reads a run folder's config and builds its model with the final (or, failing that,
// the checkpointed) weights, for inference.
func LoadRun(dir string) (*configs.Config, *models.CFN, error) {
	c, err := configs.Load(filepath.Join(dir, ConfigFile))
	if err != nil {
		if _, statErr := os.Stat(dir); statErr != nil {
			return nil, nil, fmt.Errorf("model %s: %v", dir, statErr)
		}
		return nil, nil, fmt.Errorf("model %s: not a sli2vol run folder: %w", dir, err)
	}
	m, err := models.NewCFN(c.Model)
	if err != nil {
		return nil, nil, err
	}
	path := filepath.Join(dir, ModelFile)
	var sd map[string]torchx.Tensor
	if _, statErr := os.Stat(path); statErr == nil {
		if sd, err = torchx.LoadStateDict(path); err != nil {
			return nil, nil, err // a damaged final model is an error, not a reason to use another file
		}
	} else {
		// A run still training (or interrupted) has only its checkpoint.
		ck := filepath.Join(dir, CheckpointFile)
		if _, e := os.Stat(ck); e != nil {
			return nil, nil, fmt.Errorf("model %s: no %s or %s (has training finished?)", dir, ModelFile, CheckpointFile)
		}
		all, err2 := torchx.LoadStateDict(ck)
		if err2 != nil {
			return nil, nil, err2
		}
		sd = map[string]torchx.Tensor{}
		for k, v := range all {
			if strings.HasPrefix(k, "model.") {
				sd[strings.TrimPrefix(k, "model.")] = v
			}
		}
		path = ck
	}
	if err := models.LoadStateDict(m, sd); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, m, nil
}

// ExportStateDict writes a run's weights as a plain torch.save dict with PyTorch names (out)
// and the config it was trained with beside it (out with .yaml). In PyTorch:
// bench/pytorch/sli2vol_ref.py's CFN(cfg["model"]).load_state_dict(torch.load(out)).
//
// A UNETR++ run (refine, train-fsss) exports the same way, plus OUT.classes.json: the label
// id of each output channel. Its names are the official UNETR++ state_dict's
// (bench/pytorch/unetrpp_ref.py loads it with strict=True).
func ExportStateDict(runDir, out string) error {
	base := strings.TrimSuffix(out, filepath.Ext(out))
	var c *configs.Config
	var m models.Module
	if _, err := os.Stat(filepath.Join(runDir, ClassesFile)); err == nil {
		uc, um, classes, err := LoadUNETRRun(runDir)
		if err != nil {
			return err
		}
		if err := writeClasses(base+".classes.json", classes); err != nil {
			return err
		}
		c, m = uc, um
	} else {
		cc, cm, err := LoadRun(runDir)
		if err != nil {
			return err
		}
		c, m = cc, cm
	}
	if err := torchx.SaveStateDict(out, models.StateDict(m)); err != nil {
		return err
	}
	b, err := c.YAML()
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(base+".yaml", b)
}

// ImportStateDict makes a run folder from a PyTorch-saved state dict (a dict or
// model.state_dict()) of the architecture the config describes; names and shapes must match.
func ImportStateDict(c *configs.Config, weights, runDir string) error {
	m, err := models.NewCFN(c.Model)
	if err != nil {
		return err
	}
	sd, err := torchx.LoadStateDict(weights)
	if err != nil {
		return err
	}
	if err := models.LoadStateDict(m, sd); err != nil {
		return fmt.Errorf("%s: %w", weights, err)
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(runDir, ModelFile)); err == nil {
		return fmt.Errorf("import: %s already holds a model; choose another --out", runDir)
	}
	if err := WriteRunConfig(runDir, c); err != nil {
		return err
	}
	return torchx.SaveStateDict(filepath.Join(runDir, ModelFile), models.StateDict(m))
}

// ExportTorchScript writes a run's test-time propagation step as a TorchScript module
// (models.ExportTorchScript) with the run's intensity scale.
func ExportTorchScript(runDir, out string) error {
	if _, err := os.Stat(filepath.Join(runDir, ClassesFile)); err == nil {
		return fmt.Errorf("export: %s is a UNETR++ run; TorchScript export covers the propagation network only (use --format state-dict)", runDir)
	}
	c, m, err := LoadRun(runDir)
	if err != nil {
		return err
	}
	models.SetTraining(m, false)
	if err := models.ExportTorchScript(m, c.Data.IntensityScale, out); err != nil {
		return fmt.Errorf("export %s: %w", out, err)
	}
	return nil
}

// checkFreshRun refuses to start a run in a folder that holds one, unless resuming.
func checkFreshRun(dir string, resume bool, what string) error {
	if resume {
		return nil
	}
	for _, f := range []string{CheckpointFile, ModelFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return fmt.Errorf("%s: %s already holds a run (%s); use --resume to continue it or another --out", what, dir, f)
		}
	}
	return nil
}

// finishRun ends a training loop: a stop on request is a success with no final files, an
// error is returned as it is, and otherwise the last checkpoint and model.pt are written.
func finishRun(runErr error, dir string, m models.Module, opt *torchx.Optimizer, p Progress) error {
	if runErr == errStopped {
		return nil
	}
	if runErr != nil {
		return runErr
	}
	if err := SaveCheckpoint(filepath.Join(dir, CheckpointFile), m, opt, p); err != nil {
		return err
	}
	sd, err := torchx.EncodeStateDict(models.StateDict(m))
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, ModelFile), sd)
}
