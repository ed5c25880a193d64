package runs

import (
	"fmt"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/torchx"
)

// CFNRun is a trained correspondence-flow run (sli2vol train), loaded for inference.
type CFNRun struct {
	Dir    string
	Config *configs.Config
	Model  *models.CFN
}

// UNETRRun is a trained UNETR++ run (refine, train-fsss), loaded for prediction.
type UNETRRun struct {
	Dir     string
	Config  *configs.Config
	Model   *models.UNETRPP
	Classes data.ClassMap // the label id of each output class
}

// LoadCFN reads a run folder's config and builds its network with the final (or, failing
// that, the checkpointed) weights, in evaluation mode on device ("" or "cpu": the CPU).
func LoadCFN(dir, device string) (*CFNRun, error) {
	c, err := ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	var m *models.CFN
	build := func() { m, err = NewCFN(c.Model) }
	if tryErr := torchx.Try(build); tryErr != nil || err != nil {
		return nil, fmt.Errorf("model %s: %w", dir, firstErr(tryErr, err))
	}
	r := &CFNRun{Dir: dir, Config: c, Model: m}
	if err := loadInto(dir, m); err != nil {
		return nil, err
	}
	return r, r.To(device)
}

// LoadUNETR reads a UNETR++ run folder: config, class ids and the final (or, failing that,
// checkpointed) weights, in evaluation mode on device.
func LoadUNETR(dir, device string) (*UNETRRun, error) {
	c, err := ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	classes, err := ReadClasses(dir)
	if err != nil {
		return nil, fmt.Errorf("model %s: not a UNETR++ run: %w", dir, err)
	}
	var m *models.UNETRPP
	build := func() { m, err = models.NewUNETRPP(UNETRConfig(c.UNETR, 1, len(classes.IDs))) }
	if tryErr := torchx.Try(build); tryErr != nil || err != nil {
		return nil, fmt.Errorf("model %s: %w", dir, firstErr(tryErr, err))
	}
	r := &UNETRRun{Dir: dir, Config: c, Model: m, Classes: classes}
	if err := loadInto(dir, m); err != nil {
		return nil, err
	}
	return r, r.To(device)
}

// To moves the network to device ("" or "cpu": stays on the CPU).
func (r *CFNRun) To(device string) error { return moveTo(r.Dir, r.Model, device) }

// To moves the network to device ("" or "cpu": stays on the CPU).
func (r *UNETRRun) To(device string) error { return moveTo(r.Dir, r.Model, device) }

// loadInto loads dir's weights into m and sets evaluation mode.
func loadInto(dir string, m models.Module) error {
	sd, path, err := loadWeights(dir)
	if err != nil {
		return err
	}
	if err := models.LoadStateDict(m, sd); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	models.SetTraining(m, false)
	return nil
}

func moveTo(dir string, m models.Module, device string) error {
	if device == "" || device == "cpu" {
		return nil
	}
	if err := torchx.Try(func() { models.To(m, device) }); err != nil {
		return fmt.Errorf("model %s: moving it to %s: %w", dir, device, err)
	}
	return nil
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
