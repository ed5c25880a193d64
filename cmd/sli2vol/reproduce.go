package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/runs"
)

func newReproduceCmd() *cobra.Command {
	var out string
	var allowChanged bool
	cmd := &cobra.Command{
		Use:   "reproduce RUN --out NEW [--allow-changed-data]",
		Short: "Re-run the command that made RUN (its run.json) into NEW and compare the results",
		Long: "Reads RUN/run.json, checks every input file against its recorded SHA-256 (a changed file\n" +
			"is refused, naming it, unless --allow-changed-data), warns when the code, libtorch or\n" +
			"device differ, re-runs the recorded command with RUN's effective config, seed and\n" +
			"SLI2VOL_* environment, writing into NEW, and compares: losses step by step and final\n" +
			"weights of every training run, evaluation tables, label volumes. Exits 0 when\n" +
			"everything is identical, 1 when something differs.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("reproduce: --out is required")
			}
			return reproduce(cmd, args[0], out, allowChanged)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "folder for the reproduction (must not exist or be empty)")
	cmd.Flags().BoolVar(&allowChanged, "allow-changed-data", false, "re-run even when an input file changed")
	return cmd
}

// reproduce re-runs RUN's command into out and compares the results.
func reproduce(cmd *cobra.Command, runDir, out string, allowChanged bool) error {
	p, err := runs.ReadProvenance(runDir)
	if err != nil {
		return err
	}
	runAbs, _ := filepath.Abs(runDir)
	outAbs, _ := filepath.Abs(out)
	if entries, err := os.ReadDir(outAbs); err == nil && len(entries) > 0 {
		return fmt.Errorf("reproduce: %s is not empty; not writing into it", out)
	}
	w := cmd.ErrOrStderr()
	if err := checkInputs(p, allowChanged, w); err != nil {
		return err
	}
	warnSoftware(p, w)
	args, rel, err := reproduceArgs(p, runAbs, outAbs)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "reproduce: sli2vol %s\n", strings.Join(args, " "))
	if code := rerun(p, args, cmd.OutOrStdout(), w); code != 0 {
		return fmt.Errorf("reproduce: the command exited with status %d", code)
	}
	lines, same, err := runs.CompareOutputs(runAbs, filepath.Join(outAbs, rel))
	if err != nil {
		return fmt.Errorf("reproduce: %w", err)
	}
	for _, l := range lines {
		fmt.Fprintln(cmd.OutOrStdout(), l)
	}
	if !same {
		return reproduceDiffers{fmt.Sprintf("reproduce: %s differs from %s (see above)", out, runDir)}
	}
	fmt.Fprintf(cmd.OutOrStdout(), "reproduced %s in %s: identical\n", runDir, out)
	return nil
}

// reproduceDiffers exits 1: the command ran, its results differ.
type reproduceDiffers struct{ msg string }

func (e reproduceDiffers) Error() string { return e.msg }
func (e reproduceDiffers) ExitCode() int { return 1 }

// checkInputs compares every input with its recorded digest.
func checkInputs(p *runs.Provenance, allowChanged bool, w io.Writer) error {
	for _, in := range p.Inputs {
		d, err := hashes.Sum(in.Path)
		switch {
		case err != nil && !allowChanged:
			return fmt.Errorf("reproduce: input %s: %w", in.Path, err)
		case err != nil:
			fmt.Fprintf(w, "reproduce: warning: input %s: %v\n", in.Path, err)
		case d.SHA256 != in.SHA256 && !allowChanged:
			return fmt.Errorf("reproduce: input %s changed since the run (sha256 %.12s…, recorded %.12s…); --allow-changed-data re-runs anyway", in.Path, d.SHA256, in.SHA256)
		case d.SHA256 != in.SHA256:
			fmt.Fprintf(w, "reproduce: warning: input %s changed since the run\n", in.Path)
		}
	}
	return hashes.Save()
}

// warnSoftware says which of code, libraries and device differ from the run's.
func warnSoftware(p *runs.Provenance, w io.Writer) {
	now := software(p.Software.Device)
	for _, d := range []struct{ what, was, is string }{
		{"commit", p.Software.Commit, now.Commit},
		{"sli2vol", p.Software.Sli2vol, now.Sli2vol},
		{"libtorch", p.Software.Libtorch, now.Libtorch},
		{"device", p.Software.DeviceName, now.DeviceName},
	} {
		if d.was != d.is {
			fmt.Fprintf(w, "reproduce: warning: %s was %q, is %q: results may differ\n", d.what, d.was, d.is)
		}
	}
}

// reproduceArgs is the recorded command writing into outAbs with RUN's effective config and
// without --resume, and where RUN lies inside the command's output (rel: "." when RUN is it).
func reproduceArgs(p *runs.Provenance, runAbs, outAbs string) ([]string, string, error) {
	if len(p.Command) < 2 {
		return nil, "", fmt.Errorf("reproduce: %s records no command", runs.Path(runAbs, runs.RunFile))
	}
	var args []string
	rel, hasConfig := ".", false
	in := p.Command[1:]
	for i := 0; i < len(in); i++ {
		name, value, inline := strings.Cut(in[i], "=")
		valued := map[string]bool{"--out": true, "--config": true, "--run": true}[name]
		if valued && !inline && i+1 < len(in) {
			i++
			value = in[i]
		}
		switch {
		case name == "--resume":
		case name == "--out" && valued:
			was := value
			if !filepath.IsAbs(was) {
				was = filepath.Join(p.Workdir, was)
			}
			if r, err := filepath.Rel(was, runAbs); err == nil && !strings.HasPrefix(r, "..") {
				rel = r
			}
			args = append(args, "--out", outAbs)
		case name == "--config" && valued:
			hasConfig = true
			args = append(args, "--config", runs.Path(runAbs, runs.ConfigFile))
		case name == "--run" && valued:
			args = append(args, "--run", filepath.Join(outAbs, "unetr"))
		default:
			args = append(args, in[i:i+1]...)
			if valued {
				args = append(args, value)
			}
		}
	}
	if !hasConfig {
		args = append(args, "--config", runs.Path(runAbs, runs.ConfigFile))
	}
	return args, rel, nil
}

// rerun runs args in this process, in the run's working folder and with its SLI2VOL_*
// environment, restoring both afterwards.
func rerun(p *runs.Provenance, args []string, stdout, stderr io.Writer) int {
	saved := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "SLI2VOL_") {
			saved[k] = v
			os.Unsetenv(k)
		}
	}
	for k, v := range p.Env {
		os.Setenv(k, v)
	}
	defer func() {
		for k := range p.Env {
			os.Unsetenv(k)
		}
		for k, v := range saved {
			os.Setenv(k, v)
		}
	}()
	if wd, err := os.Getwd(); err == nil && p.Workdir != "" {
		if os.Chdir(p.Workdir) == nil {
			defer os.Chdir(wd)
		}
	}
	return run(args, stdout, stderr)
}
