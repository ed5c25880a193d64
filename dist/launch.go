package dist

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// LaunchOptions describe a single-node (or, with NNodes, one node's share of a) launch.
type LaunchOptions struct {
	Exe        string   // the program each worker runs (os.Executable())
	Args       []string // its arguments, without the launcher's own flags
	NProc      int      // workers on this node
	NNodes     int      // nodes in the launch (1: this one only)
	NodeRank   int      // this node's index
	MasterAddr string   // rank 0's node; 127.0.0.1 for one node
	MasterPort int      // 0: a free port (one node only)
	Stdout     io.Writer
	Stderr     io.Writer
	// Signals received here (SIGINT, SIGTERM) are passed on to every worker, which stop at a
	// step boundary with a checkpoint.
	Signals <-chan os.Signal
	// Grace is how long the remaining workers may take to stop on their own after one has
	// failed (they notice the lost rank within the process group's timeout) before they are
	// killed.
	Grace time.Duration
}

// Launch runs the workers with the environment torchrun gives them (RANK, WORLD_SIZE,
// LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and returns the exit status of the
// launch: 0 when every worker succeeded, else the first failure's status.
func Launch(o LaunchOptions) (int, error) {
	if o.NProc < 1 || o.NNodes < 1 || o.NodeRank < 0 || o.NodeRank >= o.NNodes {
		return 2, fmt.Errorf("launch: --nproc %d, --nnodes %d, --node-rank %d: want nproc ≥ 1 and 0 ≤ node rank < nnodes", o.NProc, o.NNodes, o.NodeRank)
	}
	if o.MasterAddr == "" {
		o.MasterAddr = "127.0.0.1"
	}
	if o.MasterPort == 0 {
		if o.NNodes > 1 {
			return 2, fmt.Errorf("launch: several nodes need an agreed --master-port")
		}
		p, err := freePort(o.MasterAddr)
		if err != nil {
			return 2, fmt.Errorf("launch: no free port on %s: %w", o.MasterAddr, err)
		}
		o.MasterPort = p
	}
	procs, err := startWorkers(o)
	if err != nil {
		return 2, err
	}
	return waitWorkers(o, procs), nil
}

type exit struct {
	rank, code int
}

func startWorkers(o LaunchOptions) ([]*exec.Cmd, error) {
	world := o.NProc * o.NNodes
	var procs []*exec.Cmd
	for local := 0; local < o.NProc; local++ {
		e := Env{Rank: o.NodeRank*o.NProc + local, WorldSize: world, LocalRank: local, LocalWorldSize: o.NProc,
			MasterAddr: o.MasterAddr, MasterPort: o.MasterPort}
		cmd := exec.Command(o.Exe, o.Args...)
		cmd.Env = append(os.Environ(), e.Environ()...)
		cmd.Stdout, cmd.Stderr = o.Stdout, o.Stderr
		cmd.SysProcAttr = workerAttr()
		if err := cmd.Start(); err != nil {
			for _, p := range procs {
				p.Process.Kill()
				p.Wait()
			}
			return nil, fmt.Errorf("launch: starting rank %d: %w", e.Rank, err)
		}
		procs = append(procs, cmd)
	}
	return procs, nil
}

func waitWorkers(o LaunchOptions, procs []*exec.Cmd) int {
	done := make(chan exit, len(procs))
	for i, p := range procs {
		go func(rank int, p *exec.Cmd) {
			done <- exit{rank, exitCode(p.Wait())}
		}(o.NodeRank*o.NProc+i, p)
	}
	status, left := 0, len(procs)
	var kill <-chan time.Time
	for left > 0 {
		select {
		case sig := <-o.Signals:
			for _, p := range procs {
				p.Process.Signal(sig)
			}
		case e := <-done:
			left--
			if e.code != 0 && status == 0 {
				status = e.code
				fmt.Fprintf(o.Stderr, "sli2vol launch: rank %d exited with status %d\n", e.rank, e.code)
				grace := o.Grace
				if grace <= 0 {
					grace = time.Minute
				}
				kill = time.After(grace)
			}
		case <-kill:
			for _, p := range procs {
				p.Process.Kill()
			}
		}
	}
	return status
}

// exitCode is a finished worker's status as a shell reports it (128 + signal when killed).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 1
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
