package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/runs"
)

func newExportCmd() *cobra.Command {
	var model, format, out string
	cmd := &cobra.Command{
		Use:   "export --model RUN --format state-dict|torchscript --out F",
		Short: "Export a trained model: a torch.load-able state dict (+ config YAML), or a TorchScript propagation step",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if model == "" || out == "" {
				return fmt.Errorf("export: --model and --out are required")
			}
			switch format {
			case "state-dict":
				if err := runs.ExportStateDict(model, out); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and its config beside it\n", out)
			case "torchscript":
				if err := runs.ExportTorchScript(model, out); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: forward(slice_a, slice_b, mask_a) -> mask_b, slices in [0,1] after the window\n", out)
			default:
				return fmt.Errorf("export: format %q: want state-dict or torchscript", format)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&model, "model", "", "trained run folder")
	cmd.Flags().StringVar(&format, "format", "state-dict", "state-dict or torchscript")
	cmd.Flags().StringVar(&out, "out", "", "output .pt file (the config goes to the same name with .yaml)")
	return cmd
}

func newImportCmd() *cobra.Command {
	var weights, out string
	cmd := &cobra.Command{
		Use:   "import --config F --weights W.pt --out RUN",
		Short: "Make a run folder from a PyTorch-saved state dict of the architecture the config describes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if weights == "" || out == "" {
				return fmt.Errorf("import: --weights and --out are required")
			}
			c, err := loadConfig(cmd, nil)
			if err != nil {
				return err
			}
			if err := runs.ImportStateDict(c, weights, out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %s into %s\n", weights, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&weights, "weights", "", "state dict saved by torch.save (a dict or model.state_dict())")
	cmd.Flags().StringVar(&out, "out", "", "run folder to create (config.yaml, model.pt)")
	return cmd
}
