package dist

import (
	"fmt"
	"strconv"
	"strings"
)

// Env is a process's place in a distributed launch.
type Env struct {
	Rank, WorldSize           int // global rank and number of processes
	LocalRank, LocalWorldSize int // on this node: the CUDA device index, and how many share the node
	MasterAddr                string
	MasterPort                int
	// AgentStore: torchrun's agent already serves the TCPStore at MASTER_ADDR:MASTER_PORT
	// (TORCHELASTIC_USE_AGENT_STORE); every rank joins it as a client, under the prefix of
	// the agent's RestartCount-th attempt, as torch.distributed does.
	AgentStore   bool
	RestartCount int
}

// FromEnviron reads the launch environment through getenv (os.Getenv): torchrun's and
// Kubeflow PyTorchJob's variables, or, inside an srun step, SLURM's (SLURM_PROCID,
// SLURM_STEP_NUM_TASKS, SLURM_LOCALID, SLURM_STEP_TASKS_PER_NODE) with MASTER_ADDR and
// MASTER_PORT from the job script. ok is false when the process was not launched as one of
// several (no WORLD_SIZE and no srun step, or a world of one).
func FromEnviron(getenv func(string) string) (e Env, ok bool, err error) {
	pick := func(names ...string) string {
		for _, n := range names {
			if v := strings.TrimSpace(getenv(n)); v != "" {
				return v
			}
		}
		return ""
	}
	world := pick("WORLD_SIZE")
	if world == "" && getenv("SLURM_STEP_ID") != "" {
		// Inside an srun step (not merely a batch script's allocation): one task a process.
		world = pick("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS")
	}
	if world == "" {
		return e, false, nil
	}
	num := func(key, v string, def int) (int, error) {
		if v == "" {
			return def, nil
		}
		// SLURM's tasks per node read "2(x3)" (two on each of three nodes) or "2,1": this
		// node's count comes first on the first nodes, which is what a rank needs here.
		if i := strings.IndexAny(v, "(,"); i > 0 {
			v = v[:i]
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("distributed launch: %s=%q is not a count", key, v)
		}
		return n, nil
	}
	fields := []struct {
		dst *int
		key string
		val string
		def int
	}{
		{&e.WorldSize, "WORLD_SIZE", world, 1},
		{&e.Rank, "RANK", pick("RANK", "SLURM_PROCID"), 0},
		{&e.LocalRank, "LOCAL_RANK", pick("LOCAL_RANK", "SLURM_LOCALID"), 0},
		{&e.LocalWorldSize, "LOCAL_WORLD_SIZE", pick("LOCAL_WORLD_SIZE", "SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE", "SLURM_NTASKS_PER_NODE"), 1},
		{&e.MasterPort, "MASTER_PORT", pick("MASTER_PORT"), 29500},
	}
	for _, f := range fields {
		if *f.dst, err = num(f.key, f.val, f.def); err != nil {
			return e, false, err
		}
	}
	e.MasterAddr = pick("MASTER_ADDR")
	e.AgentStore = pick("TORCHELASTIC_USE_AGENT_STORE") == "True"
	if e.RestartCount, err = num("TORCHELASTIC_RESTART_COUNT", pick("TORCHELASTIC_RESTART_COUNT"), 0); err != nil {
		return e, false, err
	}
	if e.WorldSize <= 1 {
		return e, false, nil
	}
	return e, true, e.Validate()
}

// Validate checks that the ranks and the master address make sense together.
func (e Env) Validate() error {
	switch {
	case e.WorldSize < 1:
		return fmt.Errorf("distributed launch: WORLD_SIZE is %d", e.WorldSize)
	case e.Rank < 0 || e.Rank >= e.WorldSize:
		return fmt.Errorf("distributed launch: RANK %d is outside 0..%d (WORLD_SIZE %d)", e.Rank, e.WorldSize-1, e.WorldSize)
	case e.LocalWorldSize < 1 || e.LocalRank < 0 || e.LocalRank >= e.LocalWorldSize:
		return fmt.Errorf("distributed launch: LOCAL_RANK %d is outside 0..%d (LOCAL_WORLD_SIZE %d)", e.LocalRank, e.LocalWorldSize-1, e.LocalWorldSize)
	case e.MasterAddr == "":
		return fmt.Errorf("distributed launch: WORLD_SIZE is %d but MASTER_ADDR is not set", e.WorldSize)
	case e.MasterPort <= 0 || e.MasterPort > 65535:
		return fmt.Errorf("distributed launch: MASTER_PORT %d is not a port", e.MasterPort)
	}
	return nil
}

// Environ is e as environment variables, as torchrun sets them.
func (e Env) Environ() []string {
	return []string{
		"RANK=" + strconv.Itoa(e.Rank), "WORLD_SIZE=" + strconv.Itoa(e.WorldSize),
		"LOCAL_RANK=" + strconv.Itoa(e.LocalRank), "LOCAL_WORLD_SIZE=" + strconv.Itoa(e.LocalWorldSize),
		"MASTER_ADDR=" + e.MasterAddr, "MASTER_PORT=" + strconv.Itoa(e.MasterPort),
	}
}
