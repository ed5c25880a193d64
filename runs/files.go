package runs

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/internal/atomicfile"
)

// A run folder holds what a training run produces:
//
//	config.yaml     the effective config the run trains with
//	checkpoint.pt   the last checkpoint: model weights, optimizer state, progress
//	model.pt        the final weights (a PyTorch state dict), written at the end
//	metrics.jsonl   one JSON object per logged step
//	classes.json    UNETR++ runs only: the label id of each output class
//	run.json        provenance: code, libraries, device, command, inputs and their hashes
const (
	RunFile        = "run.json"
	ConfigFile     = "config.yaml"
	CheckpointFile = "checkpoint.pt"
	ModelFile      = "model.pt"
	MetricsFile    = "metrics.jsonl"
	ClassesFile    = "classes.json"
)

// Path is the file name of dir's run folder.
func Path(dir, name string) string { return filepath.Join(dir, name) }

// Has reports whether dir holds the file name.
func Has(dir, name string) bool {
	_, err := os.Stat(Path(dir, name))
	return err == nil
}

// IsUNETR reports whether dir is a UNETR++ run (refine, train-fsss): it records classes.
func IsUNETR(dir string) bool { return Has(dir, ClassesFile) }

// WriteConfig stores the effective config in the run folder.
func WriteConfig(dir string, c *configs.Config) error {
	b, err := c.YAML()
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(Path(dir, ConfigFile), b)
}

// ReadConfig reads a run folder's config, with errors that say whether the folder is missing
// or is not a run folder.
func ReadConfig(dir string) (*configs.Config, error) {
	c, err := configs.Load(Path(dir, ConfigFile))
	if err != nil {
		if _, statErr := os.Stat(dir); statErr != nil {
			return nil, fmt.Errorf("model %s: %w", dir, statErr)
		}
		return nil, fmt.Errorf("model %s: not a sli2vol run folder: %w", dir, err)
	}
	return c, nil
}

// CheckFresh refuses to start a run in a folder that holds one, unless resuming; what names
// the command in the error.
func CheckFresh(dir string, resume bool, what string) error {
	if resume {
		return nil
	}
	for _, f := range []string{CheckpointFile, ModelFile} {
		if Has(dir, f) {
			return fmt.Errorf("%s: %s already holds a run (%s); use --resume to continue it or another --out", what, dir, f)
		}
	}
	return nil
}

// WriteClasses stores the label id of each output class as {"ids": [...]} at path.
func WriteClasses(path string, m data.ClassMap) error {
	b, _ := json.MarshalIndent(map[string]any{"ids": m.IDs}, "", "  ")
	return atomicfile.WriteFile(path, b)
}

// ReadClasses reads a UNETR++ run's classes.json.
func ReadClasses(dir string) (data.ClassMap, error) {
	var m data.ClassMap
	path := Path(dir, ClassesFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return m, err
	}
	var f struct{ IDs []int32 }
	if err := json.Unmarshal(b, &f); err != nil {
		return m, fmt.Errorf("%s: not a class list: %w", path, err)
	}
	if len(f.IDs) < 2 {
		return m, fmt.Errorf("%s: not a class list (%d ids, want background and at least one class)", path, len(f.IDs))
	}
	m.IDs = f.IDs
	return m, nil
}
