package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/torchx"
)

// version is set at build time (-X main.version=...).
var version = "dev"

// commit is the full commit hash the binary was built from (make build sets it; run.json
// records it).
var commit = ""

// cliArgs is the command line being run (what a --nproc launch gives its workers).
var cliArgs []string

// exitUsage is the exit status for bad input, bad flags and failed commands.
const exitUsage = 2

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// The main goroutine keeps the main OS thread, where the libtorch thread count is set and
// the work runs (see torchx.PinThread for why that matters).
func init() { runtime.LockOSThread() }

// run executes one command line and returns the process exit status: 0, or exitUsage with
// one line on stderr.
func run(args []string, stdout, stderr io.Writer) int {
	cliArgs = args
	root := newRoot()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(stderr, "sli2vol: "+oneLine(err))
		code := exitUsage
		var ec interface{ ExitCode() int }
		if errors.As(err, &ec) {
			code = ec.ExitCode()
		}
		return code
	}
	return 0
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

// globalFlags are the flags every command shares; each binds a config key.
var globalFlags = []struct{ name, key, usage string }{
	{"device", "device", "auto, cpu, cuda or cuda:N (config: device)"},
	{"seed", "seed", "random seed (config: seed)"},
	{"threads", "threads", "libtorch intra-op threads, 0 = every core (config: threads)"},
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "sli2vol",
		Short:         "Segment a structure in a 3D volume from one annotated slice (Sli2Vol+)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("config", "", "YAML config file (over the built-in defaults)")
	root.PersistentFlags().String("device", "auto", globalFlags[0].usage)
	root.PersistentFlags().Int64("seed", 0, globalFlags[1].usage)
	root.PersistentFlags().Int("threads", 0, globalFlags[2].usage)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%s: %w (see %s --help)", c.CommandPath(), err, c.CommandPath())
	})
	root.AddCommand(newVersionCmd(), newConfigCmd(), newModelCmd(), newPhantomCmd(), newPrepareCmd(), newTrainCmd(),
		newPseudoLabelCmd(), newRefineCmd(), newTrainFSSSCmd(), newPipelineCmd(), newSegmentCmd(), newServeCmd(), newEvaluateCmd(), newExportCmd(), newImportCmd(), newSelftestCmd(), newReproduceCmd(), newRunsCmd())
	return root
}

// loadConfig builds the effective config for cmd: defaults ← --config ← SLI2VOL_* ← flags.
// extra binds command-specific flags (flag name → config key).
func loadConfig(cmd *cobra.Command, extra map[string]string) (*configs.Config, error) {
	l := configs.NewLoader()
	for _, g := range globalFlags {
		if err := l.BindFlag(g.key, cmd.Flags().Lookup(g.name)); err != nil {
			return nil, err
		}
	}
	for name, key := range extra {
		if err := l.BindFlag(key, cmd.Flags().Lookup(name)); err != nil {
			return nil, err
		}
	}
	path, _ := cmd.Flags().GetString("config")
	return l.Load(path)
}

// loadRuntime is loadConfig, then applyRuntime: the effective config and the device.
func loadRuntime(cmd *cobra.Command, extra map[string]string) (*configs.Config, string, error) {
	c, err := loadConfig(cmd, extra)
	if err != nil {
		return nil, "", err
	}
	dev, err := applyRuntime(c)
	return c, dev, err
}

// applyRuntime sets libtorch's threads and seed from the config and resolves the device. In
// a distributed launch, rank r of a node uses CUDA device LOCAL_RANK.
func applyRuntime(c *configs.Config) (string, error) {
	d := c.Device
	if e := launchEnv(); e.WorldSize > 1 && (d == "cuda" || d == "auto" && torchx.CUDAAvailable()) {
		d = fmt.Sprintf("cuda:%d", e.LocalRank)
	}
	dev, err := torchx.ResolveDevice(d)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(d, "cuda:") && d != c.Device { // a rank's own GPU
		if err := torchx.SetCUDADevice(launchEnv().LocalRank); err != nil {
			return "", err
		}
	}
	threads := c.Threads
	if threads <= 0 {
		threads = defaultThreads()
	}
	torchx.SetNumThreads(threads)
	torchx.ManualSeed(uint64(c.Seed))
	return dev, nil
}
