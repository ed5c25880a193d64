package runs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/internal/atomicfile"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/torchx"
)

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
	if IsUNETR(runDir) {
		r, err := LoadUNETR(runDir, "")
		if err != nil {
			return err
		}
		if err := WriteClasses(base+".classes.json", r.Classes); err != nil {
			return err
		}
		c, m = r.Config, r.Model
	} else {
		r, err := LoadCFN(runDir, "")
		if err != nil {
			return err
		}
		c, m = r.Config, r.Model
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
	m, err := NewCFN(c.Model)
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
	if Has(runDir, ModelFile) {
		return fmt.Errorf("import: %s already holds a model; choose another --out", runDir)
	}
	if err := WriteConfig(runDir, c); err != nil {
		return err
	}
	return torchx.SaveStateDict(Path(runDir, ModelFile), models.StateDict(m))
}

// ExportTorchScript writes a run's test-time propagation step as a TorchScript module
// (models.ExportTorchScript) with the run's intensity scale.
func ExportTorchScript(runDir, out string) error {
	if IsUNETR(runDir) {
		return fmt.Errorf("export: %s is a UNETR++ run; TorchScript export covers the propagation network only (use --format state-dict)", runDir)
	}
	r, err := LoadCFN(runDir, "")
	if err != nil {
		return err
	}
	if err := models.ExportTorchScript(r.Model, r.Config.Data.IntensityScale, out); err != nil {
		return fmt.Errorf("export %s: %w", out, err)
	}
	return nil
}
