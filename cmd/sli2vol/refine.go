package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/dist"
	"github.com/sli2vol/sli2vol/internal/atomicfile"
	"github.com/sli2vol/sli2vol/runs"
	"github.com/sli2vol/sli2vol/train"
)

// refine is §3.2's "PLs refinement": UNETR++ trained on the pseudo-labels of every training
// volume, then each training volume re-predicted.
// In a distributed launch every rank trains, then predicts its share of the cases.
func refine(cmd *cobra.Command, c *configs.Config, dev string, g *dist.Group, dataDir, pseudo, out, runDir string, resume, force bool) error {
	ds, err := data.OpenDataset(dataDir)
	if err != nil {
		return err
	}
	if runDir == "" {
		runDir = filepath.Join(out, "unetr")
	}
	prov := refineProvenance("refine", c, dev, g, ds, pseudo)
	if !runs.Has(runDir, runs.ModelFile) || resume {
		if err := cacheFirst(c, g, ds, pseudo, cmd.ErrOrStderr()); err != nil {
			return err
		}
		vols, err := train.SegVolumesFromPL(c, ds, pseudo, cmd.ErrOrStderr())
		if err != nil {
			return err
		}
		o := train.SegOptions{Vols: vols, Title: "refine",
			RunOptions: train.RunOptions{Dir: runDir, Device: dev, Resume: resume, Log: cmd.ErrOrStderr(), Group: g,
				Provenance: refineProvenance("refine-train", c, dev, g, ds, pseudo)}}
		if err := trainSeg(c, o, cmd.OutOrStdout()); err != nil {
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
	if err := net.RefinePseudoLabels(ds, out, data.WriteOptions{Overwrite: force}, logf, ranksOf(g)); err != nil || !isRank0(g) {
		return err
	}
	// The refined set keeps the record of which slices were annotated.
	if b, err := os.ReadFile(filepath.Join(pseudo, "annotations.json")); err == nil {
		if err := atomicfile.WriteFile(filepath.Join(out, "annotations.json"), b); err != nil {
			return err
		}
	}
	addModel(prov, runDir)
	if err := finishOutput(prov, out, c); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "refined pseudo-labels for %d cases in %s\n", len(ds.Split("train")), out)
	return nil
}

// refineProvenance records refinement's inputs: the training images and their pseudo-labels.
func refineProvenance(kind string, c *configs.Config, dev string, g *dist.Group, ds *data.Dataset, pseudo string) *runs.Provenance {
	prov := newProvenance(kind, c.Seed, dev, g)
	addCases(prov, ds, "train", false)
	addPseudoLabels(prov, ds, pseudo)
	startHashing(prov)
	return prov
}

// cacheFirst makes or completes data.cache on rank 0 before every rank opens it, so that
// the ranks of a node do not decode the same cases at once; the others wait however long
// it takes (no collective's timeout), and a failure on rank 0 is every rank's.
func cacheFirst(c *configs.Config, g *dist.Group, ds *data.Dataset, pseudo string, log io.Writer) error {
	if c.Data.Cache == "" || g == nil {
		return nil
	}
	return g.First(func() error {
		_, err := train.PrepareCache(c, ds, pseudo, false, log)
		return err
	}, time.Second)
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
			if launched, err := launchIfAsked(cmd); launched {
				return err
			}
			c, dev, g, err := loadDistRuntime(cmd, map[string]string{"epochs": "unetr.epochs"})
			if err != nil {
				return err
			}
			defer g.Close()
			return refine(cmd, c, dev, g, dataDir, pseudo, out, runDir, resume, force)
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
	addLaunchFlags(cmd)
	return cmd
}
