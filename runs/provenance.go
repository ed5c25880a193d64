package runs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sli2vol/sli2vol/internal/atomicfile"
	"github.com/sli2vol/sli2vol/internal/filehash"
)

// ProvenanceSchema names run.json's layout (runs/run.schema.json).
const ProvenanceSchema = "sli2vol-run/1"

// Provenance is run.json: what produced a run folder — the code and libraries, the device,
// the command and its environment, the seed, the times, and every input file with its size
// and SHA-256 — so that a result can be traced and re-run (sli2vol reproduce) months later.
// The effective config is config.yaml beside it.
type Provenance struct {
	Schema      string            `json:"schema"`
	Kind        string            `json:"kind"` // the command: train, refine, train-fsss, evaluate, …
	Command     []string          `json:"command"`
	Workdir     string            `json:"workdir"`
	Env         map[string]string `json:"env"` // SLI2VOL_* variables (config overrides)
	Software    Software          `json:"software"`
	Runtime     Runtime           `json:"runtime"`
	Config      string            `json:"config"` // the effective config's file, beside run.json
	Seed        int64             `json:"seed"`
	Started     time.Time         `json:"started"`
	Ended       *time.Time        `json:"ended,omitempty"`
	Status      string            `json:"status"` // running, finished, stopped, failed
	Error       string            `json:"error,omitempty"`
	Resumed     []time.Time       `json:"resumed,omitempty"`
	Inputs      []Input           `json:"inputs"`
	Annotations map[string][]int  `json:"annotations,omitempty"` // case → annotated slices, where chosen
	DataHash    string            `json:"data_hash"`             // over every input's role, path and hash

	mu     sync.Mutex
	done   chan struct{}   // closed when the inputs listed at HashInputs are hashed
	hashes *filehash.Cache // for inputs added later (Finish)
}

// Software is the code and libraries a run used.
type Software struct {
	Sli2vol    string `json:"sli2vol"` // git describe of the build
	Commit     string `json:"commit"`
	Dirty      bool   `json:"dirty"` // built from a tree with uncommitted changes
	Go         string `json:"go"`
	Libtorch   string `json:"libtorch"`
	Gotorch    string `json:"gotorch"`
	CUDA       bool   `json:"cuda"`
	CUDNN      bool   `json:"cudnn"`
	Device     string `json:"device"`
	DeviceName string `json:"device_name"`
}

// Runtime is how the run was executed.
type Runtime struct {
	Threads       int    `json:"threads"`
	WorldSize     int    `json:"world_size"`
	HostAllocator string `json:"host_allocator"`
	Host          string `json:"host"`
}

// Input is a file (or DICOM folder) the run read.
type Input struct {
	Role   string `json:"role"` // image, label, annotation, pseudo-label, model, …
	Path   string `json:"path"` // absolute
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // "" until hashed
}

// NewProvenance begins the record of a command started now from this process's arguments
// and environment.
func NewProvenance(kind string, sw Software, rt Runtime, seed int64) *Provenance {
	wd, _ := os.Getwd()
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "SLI2VOL_") {
			env[k] = v
		}
	}
	rt.Host, _ = os.Hostname()
	return &Provenance{Schema: ProvenanceSchema, Kind: kind, Command: append([]string(nil), os.Args...), Workdir: wd,
		Env: env, Software: sw, Runtime: rt, Config: ConfigFile, Seed: seed, Started: time.Now().UTC(), Status: "running"}
}

// AddInput records an input file (once per path and role).
func (p *Provenance) AddInput(role, path string) {
	if p == nil || path == "" {
		return
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, in := range p.Inputs {
		if in.Path == abs && in.Role == role {
			return
		}
	}
	p.Inputs = append(p.Inputs, Input{Role: role, Path: abs})
}

// HashInputs hashes the inputs in the background (remembered in c by path, size and time,
// so a dataset costs its hashing once); Finish waits for it.
func (p *Provenance) HashInputs(c *filehash.Cache) {
	if p == nil || p.done != nil {
		return
	}
	p.done, p.hashes = make(chan struct{}), c
	p.mu.Lock()
	todo := append([]Input(nil), p.Inputs...)
	p.mu.Unlock()
	go func() {
		defer close(p.done)
		for i, in := range todo {
			d, err := c.Sum(in.Path)
			if err != nil {
				continue // a vanished input: its hash stays empty, which reproduce reports
			}
			p.mu.Lock()
			p.Inputs[i].Size, p.Inputs[i].SHA256 = d.Size, d.SHA256
			p.mu.Unlock()
		}
		c.Save()
	}()
}

// Write stores run.json in dir (atomically).
func (p *Provenance) Write(dir string) error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	p.DataHash = dataHash(p.Inputs)
	b, err := json.MarshalIndent(p, "", "  ")
	p.mu.Unlock()
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(Path(dir, RunFile), append(b, '\n'))
}

// Finish records how the command ended (err nil: finished; stopped: a requested stop) once
// the inputs are hashed, and writes run.json in dir.
func (p *Provenance) Finish(dir string, stopped bool, err error) error {
	if p == nil {
		return nil
	}
	if p.done != nil {
		<-p.done
		p.hashLate()
	}
	now := time.Now().UTC()
	p.Ended, p.Status = &now, "finished"
	switch {
	case stopped: // a requested stop (its error says so) is not a failure
		p.Status = "stopped"
		if err != nil {
			p.Error = err.Error()
		}
	case err != nil:
		p.Status, p.Error = "failed", err.Error()
	}
	return p.Write(dir)
}

// dataHash digests the inputs' roles, paths and hashes in path order: two runs read the
// same data when their data hashes agree.
func dataHash(in []Input) string {
	lines := make([]string, len(in))
	for i, x := range in {
		lines[i] = x.Role + " " + x.Path + " " + x.SHA256
	}
	sort.Strings(lines)
	h := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(h[:8])
}

// ReadProvenance reads dir's run.json.
func ReadProvenance(dir string) (*Provenance, error) {
	b, err := os.ReadFile(Path(dir, RunFile))
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", dir, err)
	}
	var p Provenance
	if err := json.Unmarshal(b, &p); err != nil || p.Schema != ProvenanceSchema {
		return nil, fmt.Errorf("%s: not a %s record", Path(dir, RunFile), ProvenanceSchema)
	}
	return &p, nil
}

// Begin writes run.json as the run starts in dir; resuming, it keeps the first start and
// notes this one.
func (p *Provenance) Begin(dir string, resume bool) error {
	if p == nil {
		return nil
	}
	if prev, err := ReadProvenance(dir); err == nil && resume {
		p.Resumed = append(prev.Resumed, p.Started)
		p.Started = prev.Started
	}
	return p.Write(dir)
}

// hashLate hashes the inputs added after HashInputs started (such as a model trained by the
// command itself).
func (p *Provenance) hashLate() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, in := range p.Inputs {
		if in.SHA256 != "" {
			continue
		}
		if d, err := p.hashes.Sum(in.Path); err == nil {
			p.Inputs[i].Size, p.Inputs[i].SHA256 = d.Size, d.SHA256
		}
	}
	p.hashes.Save()
}
