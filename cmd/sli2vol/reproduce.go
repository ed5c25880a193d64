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
// A refine's --run goes to the same place inside NEW as it was inside the recorded --out
// (NEW/unetr when it was elsewhere); a data-parallel run gets its --nproc back (its workers
// record the command without it).
func reproduceArgs(p *runs.Provenance, runAbs, outAbs string) ([]string, string, error) {
	if len(p.Command) < 2 {
		return nil, "", fmt.Errorf("reproduce: %s records no command", runs.Path(runAbs, runs.RunFile))
	}
	flags := recordedFlags(p)
	newRun := ""
	if old := flags["--run"]; old != "" {
		newRun = filepath.Join(outAbs, "unetr")
		if r, ok := within(flags["--out"], old); ok {
			newRun = filepath.Join(outAbs, r)
		}
	}
	rel := "."
	if r, ok := within(flags["--out"], runAbs); ok {
		rel = r
	}
	if r, ok := within(flags["--run"], runAbs); ok {
		rel, _ = filepath.Rel(outAbs, filepath.Join(newRun, r))
	}
	args := []string{}
	in := p.Command[1:]
	for i := 0; i < len(in); i++ {
		name, _, inline := strings.Cut(in[i], "=")
		if _, valued := flags[name]; valued && !inline {
			i++ // the value: replaced or kept below
		}
		switch name {
		case "--resume", "--config":
		case "--out":
			args = append(args, "--out", outAbs)
		case "--run":
			args = append(args, "--run", newRun)
		case "--nproc":
			args = append(args, "--nproc", flags["--nproc"])
		default:
			args = append(args, in[i])
		}
	}
	args = append(args, "--config", runs.Path(runAbs, runs.ConfigFile))
	if _, ok := flags["--nproc"]; !ok && p.Runtime.WorldSize > 1 {
		args = append(args, "--nproc", fmt.Sprint(p.Runtime.WorldSize))
	}
	return args, rel, nil
}

// recordedFlags are the values of the command's path flags, made absolute against its
// working folder (--nproc only noted).
func recordedFlags(p *runs.Provenance) map[string]string {
	flags := map[string]string{}
	in := p.Command[1:]
	for i := 0; i < len(in); i++ {
		name, value, inline := strings.Cut(in[i], "=")
		switch name {
		case "--out", "--config", "--run", "--nproc":
		default:
			continue
		}
		if !inline && i+1 < len(in) {
			i++
			value = in[i]
		}
		if name != "--nproc" && !filepath.IsAbs(value) {
			value = filepath.Join(p.Workdir, value)
		}
		flags[name] = value
	}
	return flags
}

// within is path relative to dir when it lies inside it.
func within(dir, path string) (string, bool) {
	if dir == "" {
		return "", false
	}
	r, err := filepath.Rel(dir, path)
	if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
		return "", false
	}
	return r, true
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
