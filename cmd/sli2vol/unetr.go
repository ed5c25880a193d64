package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/infer"
	"github.com/sli2vol/sli2vol/internal/atomicfile"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/torchx"
	"github.com/sli2vol/sli2vol/train"
)

// loadSegNet loads a UNETR++ run for prediction on dev.
func loadSegNet(runDir, dev string) (*infer.SegNet, error) {
	c, m, classes, err := train.LoadUNETRRun(runDir)
	if err != nil {
		return nil, err
	}
	if err := torchx.Try(func() { models.To(m, dev) }); err != nil {
		return nil, err
	}
	return &infer.SegNet{Cfg: c, Model: m, Classes: classes, Device: dev}, nil
}

// trainSeg runs a UNETR++ training with SIGINT/SIGTERM ending it at a checkpoint.
func trainSeg(c *configs.Config, o train.SegOptions, stdout io.Writer) error {
	sig, stop := interrupts()
	defer stop()
	o.Interrupt = sig
	r, err := train.TrainUNETRPP(c, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "trained UNETR++ (%s) on %s: %d steps, loss %.4f → %.4f; model in %s\n",
		o.Title, o.Device, r.Steps, r.FirstLoss, r.LastLoss, o.RunDir)
	return nil
}

// refine is §3.2's "PLs refinement": UNETR++ trained on the pseudo-labels of every training
// volume, then each training volume re-predicted.
func refine(cmd *cobra.Command, c *configs.Config, dev, dataDir, pseudo, out, runDir string, resume, force bool) error {
	ds, err := data.OpenDataset(dataDir)
	if err != nil {
		return err
	}
	if runDir == "" {
		runDir = filepath.Join(out, "unetr")
	}
	if _, err := os.Stat(filepath.Join(runDir, train.ModelFile)); err != nil || resume {
		vols, err := train.SegVolumesFromPL(c, ds, pseudo)
		if err != nil {
			return err
		}
		if err := trainSeg(c, train.SegOptions{Vols: vols, RunDir: runDir, Device: dev, Resume: resume,
			Log: cmd.ErrOrStderr(), Title: "refine"}, cmd.OutOrStdout()); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(cmd.OutOrStdout(), "using the trained UNETR++ in %s\n", runDir)
	}
	net, err := loadSegNet(runDir, dev)
	if err != nil {
		return err
	}
	net.Log = cmd.ErrOrStderr()
	logf := func(s string) { fmt.Fprintln(cmd.ErrOrStderr(), s) }
	if err := net.RefinePseudoLabels(ds, out, data.WriteOptions{Overwrite: force}, logf); err != nil {
		return err
	}
	// The refined set keeps the record of which slices were annotated.
	if b, err := os.ReadFile(filepath.Join(pseudo, "annotations.json")); err == nil {
		if err := atomicfile.WriteFile(filepath.Join(out, "annotations.json"), b); err != nil {
			return err
		}
	}
	fmt.Fprintf(cmd.OutOrStdout(), "refined pseudo-labels for %d cases in %s\n", len(ds.Split("train")), out)
	return nil
}

func newRefineCmd() *cobra.Command {
	var dataDir, pseudo, out, runDir string
	var resume, force bool
	cmd := &cobra.Command{
		Use:   "refine --data DIR --pseudo PLDIR --out REFINED [--run RUN]",
		Short: "Refine pseudo-labels with UNETR++ trained on them (§3.2); writes REFINED/labelsTr",
		Long: "Trains UNETR++ (config section unetr) on every training volume's pseudo-labels, then\n" +
			"re-predicts each training volume by sliding windows. The network's run folder is --run\n" +
			"(default REFINED/unetr); an existing trained run there is reused.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" || pseudo == "" || out == "" {
				return fmt.Errorf("refine: --data, --pseudo and --out are required")
			}
			if filepath.Clean(out) == filepath.Clean(pseudo) {
				return fmt.Errorf("refine: --out %s is the --pseudo folder; refined labels never overwrite their input", out)
			}
			c, err := loadConfig(cmd, map[string]string{"epochs": "unetr.epochs"})
			if err != nil {
				return err
			}
			dev, err := applyRuntime(c)
			if err != nil {
				return err
			}
			return refine(cmd, c, dev, dataDir, pseudo, out, runDir, resume, force)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", "", "training dataset")
	f.StringVar(&pseudo, "pseudo", "", "pseudo-labels to refine (sli2vol pseudo-label output)")
	f.StringVar(&out, "out", "", "output folder for refined pseudo-labels (labelsTr/ID.nii.gz)")
	f.StringVar(&runDir, "run", "", "UNETR++ run folder (default OUT/unetr)")
	f.BoolVar(&resume, "resume", false, "continue the UNETR++ run from its last checkpoint")
	f.BoolVar(&force, "force", false, "overwrite existing refined pseudo-labels")
	f.Int("epochs", 0, "UNETR++ epochs (config: unetr.epochs)")
	return cmd
}

func newTrainFSSSCmd() *cobra.Command {
	var dataDir, out string
	var resume bool
	cmd := &cobra.Command{
		Use:   "train-fsss --data DIR --out RUN",
		Short: "Train the FS-SS baseline (§4.3): UNETR++ on one annotated slice per volume",
		Long: "Trains UNETR++ with the loss restricted to the slices that `sli2vol evaluate` annotates\n" +
			"in each evaluation volume of DIR (same seed, same choice), as the paper's FS-SS baseline\n" +
			"does. Score it with `sli2vol evaluate --fsss RUN` on the same data and config.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" || out == "" {
				return fmt.Errorf("train-fsss: --data and --out are required")
			}
			c, err := loadConfig(cmd, map[string]string{"epochs": "unetr.epochs"})
			if err != nil {
				return err
			}
			dev, err := applyRuntime(c)
			if err != nil {
				return err
			}
			ds, err := data.OpenDataset(dataDir)
			if err != nil {
				return err
			}
			vols, err := infer.FSSSVolumes(c, ds)
			if err != nil {
				return err
			}
			return trainSeg(c, train.SegOptions{Vols: vols, RunDir: out, Device: dev, Resume: resume,
				Log: cmd.ErrOrStderr(), Title: "fs-ss"}, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", "", "labelled dataset (the volumes evaluate scores)")
	f.StringVar(&out, "out", "", "run folder")
	f.BoolVar(&resume, "resume", false, "continue from the run folder's last checkpoint")
	f.Int("epochs", 0, "UNETR++ epochs (config: unetr.epochs)")
	return cmd
}
