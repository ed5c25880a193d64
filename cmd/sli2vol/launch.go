package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/dist"
	"github.com/sli2vol/sli2vol/infer"
)

// The launcher's own flags: a training command given --nproc N starts N workers of itself
// (without these flags) as torchrun would, on this machine.
var launchFlags = []string{"nproc", "nnodes", "node-rank", "master-addr", "master-port"}

func addLaunchFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.Int("nproc", 0, "data-parallel training: start N worker processes here (torchrun's --nproc_per_node)")
	f.Int("nnodes", 1, "with --nproc: nodes in the launch, each running this launcher")
	f.Int("node-rank", 0, "with --nproc: this node's index among --nnodes")
	f.String("master-addr", "127.0.0.1", "with --nproc: rank 0's node (its TCPStore)")
	f.Int("master-port", 0, "with --nproc: rank 0's port; 0 picks a free one (one node only)")
}

// launchFailed is a launch whose worker failed; the launcher has printed which.
type launchFailed struct{ code int }

func (e launchFailed) Error() string { return fmt.Sprintf("a worker exited with status %d", e.code) }
func (e launchFailed) ExitCode() int { return e.code }

// launchIfAsked runs the command as --nproc workers when asked to (and not a worker
// already); launched reports that it did, and err carries the launch's exit status.
func launchIfAsked(cmd *cobra.Command) (launched bool, err error) {
	n, _ := cmd.Flags().GetInt("nproc")
	if n <= 0 || os.Getenv("WORLD_SIZE") != "" {
		return false, nil
	}
	nnodes, _ := cmd.Flags().GetInt("nnodes")
	nodeRank, _ := cmd.Flags().GetInt("node-rank")
	addr, _ := cmd.Flags().GetString("master-addr")
	port, _ := cmd.Flags().GetInt("master-port")
	exe, err := os.Executable()
	if err != nil {
		return true, fmt.Errorf("launch: %w", err)
	}
	sig, stop := interrupts()
	defer stop()
	code, err := dist.Launch(dist.LaunchOptions{Exe: exe, Args: withoutFlags(cliArgs, launchFlags),
		NProc: n, NNodes: nnodes, NodeRank: nodeRank, MasterAddr: addr, MasterPort: port,
		Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr(), Signals: sig})
	if err != nil {
		return true, err
	}
	if code != 0 {
		return true, launchFailed{code}
	}
	return true, nil
}

// withoutFlags drops the named flags (--name V and --name=V) from args.
func withoutFlags(args, names []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		drop := false
		for _, n := range names {
			if a == "--"+n {
				drop = true
				i++ // and its value
				break
			}
			if strings.HasPrefix(a, "--"+n+"=") {
				drop = true
				break
			}
		}
		if !drop {
			out = append(out, a)
		}
	}
	return out
}

// joinGroup joins the process group of a distributed launch (torchrun, srun, Kubeflow, or
// --nproc): nil in a single process.
func joinGroup(c *configs.Config, dev string) (*dist.Group, error) {
	e, ok, err := dist.FromEnviron(os.Getenv)
	if err != nil || !ok {
		return nil, err
	}
	b, err := dist.ParseBackend(string(c.Dist.Backend), dev)
	if err != nil {
		return nil, err
	}
	if !dist.Available(b) {
		return nil, fmt.Errorf("dist.backend %s: this sli2vol's libtorch has no %s process group", b, b)
	}
	return dist.Init(e, b, time.Duration(c.Dist.TimeoutS)*time.Second)
}

// loadDistRuntime is loadRuntime, then joinGroup: the config, the device and, in a
// distributed launch, the process group (close it when done; nil in a single process).
func loadDistRuntime(cmd *cobra.Command, extra map[string]string) (*configs.Config, string, *dist.Group, error) {
	c, dev, err := loadRuntime(cmd, extra)
	if err != nil {
		return nil, "", nil, err
	}
	g, err := joinGroup(c, dev)
	return c, dev, g, err
}

// launchEnv is this process's place in a distributed launch (zero in a single process).
func launchEnv() dist.Env {
	e, ok, err := dist.FromEnviron(os.Getenv)
	if err != nil || !ok {
		return dist.Env{LocalWorldSize: 1}
	}
	return e
}

// defaultThreads is libtorch's intra-op thread count for threads: 0: the cores shared by the
// ranks of this node (two 2-thread processes on 2 cores fall from 15 to 0.5–4 samples/s).
func defaultThreads() int {
	return max(1, runtime.NumCPU()/max(1, launchEnv().LocalWorldSize))
}

// isRank0 reports whether this process reports results (always, in a single process).
func isRank0(g *dist.Group) bool { return g == nil || g.Rank() == 0 }

// ranksOf is g as infer's per-case splitter: nil (every case here) without a group.
func ranksOf(g *dist.Group) infer.Ranks {
	if g == nil {
		return nil
	}
	return g
}
