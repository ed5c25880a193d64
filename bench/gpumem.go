package bench

import (
	"bufio"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"sync"
)

// gpuMemory measures a child process's GPU memory the same way for both sides: the card's
// used memory as the driver reports it (nvidia-smi), sampled while the child runs, minus the
// level just before it started. That counts what each process holds (caching allocator pool,
// CUDA context, cuDNN/cuBLAS workspaces), which is what a user sizing a card needs; neither
// side has to report on itself, and PyTorch's and libtorch's allocators are treated alike.
// Only one benchmark process runs at a time, so the difference is that process's.
type gpuMemory struct {
	cmd  string   // nvidia-smi (a stand-in in tests)
	args []string // query arguments; the sampling loop adds its interval
}

func newGPUMemory(cmd string) *gpuMemory {
	if cmd == "" {
		return nil
	}
	return &gpuMemory{cmd: cmd, args: []string{"--query-gpu=memory.used", "--format=csv,noheader,nounits", "--id=0"}}
}

// usedMiB reads the used memory once (NaN when the tool fails).
func (g *gpuMemory) usedMiB() float64 {
	out, err := exec.Command(g.cmd, g.args...).Output()
	if err != nil {
		return math.NaN()
	}
	return maxLine(strings.NewReader(string(out)))
}

func maxLine(r interface{ Read([]byte) (int, error) }) float64 {
	peak := math.NaN()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		v, err := strconv.ParseFloat(strings.TrimSpace(sc.Text()), 64)
		if err == nil && (math.IsNaN(peak) || v > peak) {
			peak = v
		}
	}
	return peak
}

// during runs f while sampling every 50 ms and returns the peak above the level before f
// (NaN when nothing could be read).
func (g *gpuMemory) during(f func() error) (float64, error) {
	base := g.usedMiB()
	c := exec.Command(g.cmd, append(append([]string(nil), g.args...), "--loop-ms=50")...)
	pipe, err := c.StdoutPipe()
	if err != nil || c.Start() != nil {
		return math.NaN(), f()
	}
	var peak float64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); peak = maxLine(pipe) }()
	ferr := f()
	// One last reading after the child exits could miss nothing it held: the driver frees a
	// process's memory at exit, and the loop has sampled while it ran.
	c.Process.Kill()
	wg.Wait()
	c.Wait()
	if math.IsNaN(base) || math.IsNaN(peak) {
		return math.NaN(), ferr
	}
	return math.Max(0, peak-base), ferr
}
