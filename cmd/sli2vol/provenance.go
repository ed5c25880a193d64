package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/dist"
	"github.com/sli2vol/sli2vol/internal/filehash"
	"github.com/sli2vol/sli2vol/runs"
	"github.com/sli2vol/sli2vol/torchx"
	"github.com/sli2vol/sli2vol/train"
)

// newProvenance begins run.json's record of this command (kind) on dev; nil on ranks other
// than 0, which write no run folder files. Record inputs with the add… helpers, then call
// start to hash them in the background.
func newProvenance(kind string, seed int64, dev string, g *dist.Group) *runs.Provenance {
	if !isRank0(g) {
		return nil
	}
	world := 1
	if g != nil {
		world = g.Size()
	}
	alloc := "the C library's settings"
	if torchx.HostAllocPolicyApplied() {
		alloc = "sli2vol's: freed heap kept, large blocks mapped"
	}
	p := runs.NewProvenance(kind, software(dev), runs.Runtime{Threads: torchx.NumThreads(), WorldSize: world, HostAllocator: alloc}, seed)
	p.Command = append([]string{"sli2vol"}, cliArgs...) // the command as given (os.Args may be a launcher's)
	return p
}

// software is the build and libraries this process runs on dev.
func software(dev string) runs.Software {
	sw := runs.Software{Sli2vol: version, Go: runtime.Version(), Libtorch: torchx.LibtorchVersion(),
		Gotorch: moduleVersion(gotorchModule), CUDA: torchx.CUDAAvailable(), CUDNN: torchx.CUDNNAvailable(), Device: dev, DeviceName: "cpu"}
	// go build stamps the commit and whether the tree had changes (not go test, nor -buildvcs=false).
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				sw.Commit = s.Value
			case "vcs.modified":
				sw.Dirty = s.Value == "true"
			}
		}
	}
	if commit != "" {
		sw.Commit = commit
	}
	if strings.HasSuffix(version, "-dirty") {
		sw.Dirty = true
	}
	if strings.HasPrefix(dev, "cuda") {
		idx := 0
		if _, after, ok := strings.Cut(dev, ":"); ok {
			for _, ch := range after {
				idx = idx*10 + int(ch-'0')
			}
		}
		if name, err := torchx.CUDADeviceName(idx); err == nil {
			sw.DeviceName = name
		}
	}
	return sw
}

// addCases records the images of a split (and, with labels, their label and annotation
// files) as inputs.
func addCases(p *runs.Provenance, ds *data.Dataset, split string, labels bool) {
	for _, c := range ds.Split(split) {
		p.AddInput("image", c.Image)
		if labels {
			p.AddInput("label", c.Label)
			p.AddInput("annotation", c.Annotation)
		}
	}
}

// addPseudoLabels records the training split's pseudo-label files in dir.
func addPseudoLabels(p *runs.Provenance, ds *data.Dataset, dir string) {
	if p == nil || dir == "" {
		return
	}
	for _, c := range ds.Split("train") {
		if f, err := train.PseudoLabelPath(dir, c.ID); err == nil {
			p.AddInput("pseudo-label", f)
		}
	}
}

// addModel records a trained run's weights as an input.
func addModel(p *runs.Provenance, runDir string) {
	if runs.Has(runDir, runs.ModelFile) {
		p.AddInput("model", runs.Path(runDir, runs.ModelFile))
	}
}

// hashes remembers input digests across runs (and between the records of one command).
var hashes = filehash.Default()

// startHashing hashes the recorded inputs in the background.
func startHashing(p *runs.Provenance) { p.HashInputs(hashes) }

// finishOutput ends the record of a command whose output folder is not a training run
// (pseudo-labels, refined labels, a report, a pipeline): its effective config and run.json
// go beside the outputs, with the annotated slices when the folder records them.
func finishOutput(p *runs.Provenance, dir string, c *configs.Config) error {
	if p == nil {
		return nil
	}
	if b, err := os.ReadFile(filepath.Join(dir, "annotations.json")); err == nil && p.Annotations == nil {
		var rec map[string][]struct {
			Slice int `json:"slice"`
		}
		if json.Unmarshal(b, &rec) == nil {
			p.Annotations = map[string][]int{}
			for id, anns := range rec {
				for _, a := range anns {
					if !slices.Contains(p.Annotations[id], a.Slice) {
						p.Annotations[id] = append(p.Annotations[id], a.Slice)
					}
				}
				slices.Sort(p.Annotations[id])
			}
		}
	}
	if err := runs.WriteConfig(dir, c); err != nil {
		return err
	}
	return p.Finish(dir, false, nil)
}
