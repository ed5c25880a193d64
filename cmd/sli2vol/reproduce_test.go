package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/internal/schemacheck"
	"github.com/sli2vol/sli2vol/runs"
)

// plainPhantoms writes 2 phantom cases as a plain folder with uncompressed images, in which a
// changed byte still leaves a valid volume.
func plainPhantoms(t *testing.T, dir string) {
	t.Helper()
	msd := filepath.Join(t.TempDir(), "msd")
	if err := data.WritePhantomDataset(msd, 2, 1, [3]int{32, 32, 10}, data.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(dir, 0o755)
	for _, id := range []string{"phantom_000", "phantom_001"} {
		img, lab, err := data.LoadCase(data.Case{Image: filepath.Join(msd, "imagesTr", id+".nii.gz"), Label: filepath.Join(msd, "labelsTr", id+".nii.gz")}, data.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		if err := data.WriteImageInt16(filepath.Join(dir, id+".nii"), img.Data, &img.Geometry, data.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := data.WriteLabels(filepath.Join(dir, id+"_seg.nii.gz"), lab.Data, &lab.Geometry, data.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// A training records run.json (valid against runs/run.schema.json, inputs hashed); reproduce
// re-runs it bit for bit; a changed input byte is refused, naming the file, or with
// --allow-changed-data shows where the losses part; runs diff names exactly the changed
// config key and file.
func TestReproduceAndDiff(t *testing.T) {
	dir := t.TempDir()
	p := func(s string) string { return filepath.Join(dir, s) }
	plainPhantoms(t, p("ds"))
	tiny := "device: cpu\ndata: {resize_range: [32, 34], crop: 32}\n" +
		"model: {mode: sli2vol, width: 4, stages: 1, blocks_per_stage: 1, feature_dim: 8, radius: 2, edge_radius: 1}\n"
	os.WriteFile(p("a.yaml"), []byte(tiny+"train: {batch_size: 4, epochs: 1, lr: 1.0e-3}\n"), 0o644)
	os.WriteFile(p("b.yaml"), []byte(tiny+"train: {batch_size: 4, epochs: 1, lr: 2.0e-3}\n"), 0o644)
	if code, o, e := runCLI(t, "train", "--config", p("a.yaml"), "--data", p("ds"), "--out", p("run")); code != 0 {
		t.Fatalf("train: %s %s", o, e)
	}
	doc, _ := os.ReadFile(runs.Path(p("run"), runs.RunFile))
	schema, err := os.ReadFile("../../runs/run.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := schemacheck.Validate(schema, doc); err != nil {
		t.Fatalf("run.json: %v", err)
	}
	prov, err := runs.ReadProvenance(p("run"))
	if err != nil || prov.Status != "finished" || len(prov.Inputs) != 2 {
		t.Fatalf("run.json read back: %+v %v", prov, err)
	}
	for _, in := range prov.Inputs {
		b, _ := os.ReadFile(in.Path)
		sum := sha256.Sum256(b)
		if in.SHA256 != hex.EncodeToString(sum[:]) || in.Size != int64(len(b)) {
			t.Fatalf("%s: recorded %s (%d bytes)", in.Path, in.SHA256, in.Size)
		}
	}
	if code, o, e := runCLI(t, "reproduce", p("run"), "--out", p("again")); code != 0 || !strings.Contains(o, "identical") {
		t.Fatalf("reproduce: exit %d\n%s\n%s", code, o, e)
	}
	// One byte: the high byte of a voxel in the middle of the first volume (int16 after a
	// 352-byte header), ±256 HU inside the body.
	img := p("ds/phantom_000.nii")
	b, _ := os.ReadFile(img)
	b[352+2*(16+32*(16+32*5))+1] ^= 1
	os.WriteFile(img, b, 0o644)
	code, _, e := runCLI(t, "reproduce", p("run"), "--out", p("changed"))
	if code != 2 || strings.Count(e, "\n") != 1 || !strings.Contains(e, img+" changed since the run") {
		t.Fatalf("changed input: exit %d, %q", code, e)
	}
	code, o, e := runCLI(t, "reproduce", p("run"), "--out", p("changed2"), "--allow-changed-data")
	if code != 1 || !strings.Contains(o, "losses first differ at step") {
		t.Fatalf("--allow-changed-data: exit %d\n%s\n%s", code, o, e)
	}
	if code, o, e := runCLI(t, "train", "--config", p("b.yaml"), "--data", p("ds"), "--out", p("run-b")); code != 0 {
		t.Fatalf("train b: %s %s", o, e)
	}
	code, o, e = runCLI(t, "runs", "diff", p("run"), p("run-b"))
	lines := strings.Split(strings.TrimSpace(o), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "config train.lr: 0.001 | 0.002") ||
		!strings.HasPrefix(lines[1], "input image "+img+": sha256") || !strings.HasPrefix(lines[2], "metrics: ") {
		t.Fatalf("runs diff: exit %d\n%s\n%s", code, o, e)
	}
}

// The recorded command is rewritten to write into NEW: --out and a refine's --run moved,
// --resume dropped, RUN's effective config, --nproc restored from the world size.
func TestReproduceArgs(t *testing.T) {
	for _, tc := range []struct {
		cmd     string
		world   int
		run     string
		args    string
		compare string
	}{
		{"train --config c.yaml --data ds --out r --resume", 1, "/w/r",
			"train --data ds --out /n --config /w/r/config.yaml", "."},
		{"train --out=r --data ds", 2, "/w/r",
			"train --out /n --data ds --config /w/r/config.yaml --nproc 2", "."},
		{"refine --data ds --pseudo pl --out ref --run /elsewhere/net", 1, "/elsewhere/net",
			"refine --data ds --pseudo pl --out /n --run /n/unetr --config /elsewhere/net/config.yaml", "unetr"},
		{"refine --data ds --pseudo pl --out ref --run ref/net", 1, "/w/ref/net",
			"refine --data ds --pseudo pl --out /n --run /n/net --config /w/ref/net/config.yaml", "net"},
		{"pipeline --data ds --out p --nproc 2", 2, "/w/p/sli2vol+",
			"pipeline --data ds --out /n --nproc 2 --config /w/p/sli2vol+/config.yaml", "sli2vol+"},
	} {
		p := &runs.Provenance{Command: append([]string{"sli2vol"}, strings.Fields(tc.cmd)...), Workdir: "/w",
			Runtime: runs.Runtime{WorldSize: tc.world}}
		args, rel, err := reproduceArgs(p, tc.run, "/n")
		if err != nil || strings.Join(args, " ") != tc.args || rel != tc.compare {
			t.Errorf("%s:\n got %q (compare %s) %v\nwant %q (compare %s)", tc.cmd, strings.Join(args, " "), rel, err, tc.args, tc.compare)
		}
	}
}
