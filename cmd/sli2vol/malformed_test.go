package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/torchx"
)

// nii reads a .nii.gz written by data and returns its uncompressed bytes for mutation.
func nii(t *testing.T, path string) []byte {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(z)
	return b
}

func gz(b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

// NIfTI-1 header offsets.
const (
	offDim      = 40
	offDatatype = 70
	offMagic    = 344
)

func setDim(b []byte, i int, v int16) []byte {
	c := append([]byte(nil), b...)
	binary.LittleEndian.PutUint16(c[offDim+2*i:], uint16(v))
	return c
}

// Malformed input: each case exits 2 with one line on stderr naming the file and the problem,
// writes no output, and does not panic.
func TestMalformedInputs(t *testing.T) {
	dir := t.TempDir()
	p := func(s string) string { return filepath.Join(dir, s) }
	write := func(name string, b []byte) string {
		if err := os.WriteFile(p(name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p(name)
	}
	// A valid phantom, an annotation of one slice, a tiny trained model.
	if err := data.WritePhantomDataset(p("ds"), 1, 1, [3]int{32, 32, 12}, data.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	img := p("ds/imagesTr/phantom_000.nii.gz")
	lab, _ := data.LoadLabels(p("ds/labelsTr/phantom_000.nii.gz"), data.DefaultLimits)
	s, _ := data.NewSlicer(&lab.Geometry, -1)
	one := make([]int32, len(lab.Data))
	data.SetSlice(s, one, 6, data.Slice(s, lab.Data, 6))
	ann := p("ann.nii.gz")
	data.WriteLabels(ann, one, &lab.Geometry, data.WriteOptions{})
	two := append([]int32(nil), one...)
	data.SetSlice(s, two, 8, data.Slice(s, lab.Data, 8))
	ann2 := p("ann2.nii.gz")
	data.WriteLabels(ann2, two, &lab.Geometry, data.WriteOptions{})
	empty := p("empty-ann.nii.gz")
	data.WriteLabels(empty, make([]int32, len(lab.Data)), &lab.Geometry, data.WriteOptions{})
	cfg := write("tiny.yaml", []byte("device: cpu\ndata: {resize_range: [32, 34], crop: 32}\n"+
		"model: {mode: sli2vol, width: 4, stages: 1, blocks_per_stage: 1, feature_dim: 4, radius: 2}\ntrain: {batch_size: 4, epochs: 1}\n"))
	if code, o, e := runCLI(t, "train", "--config", cfg, "--data", p("ds"), "--out", p("run")); code != 0 {
		t.Fatalf("train: %s %s", o, e)
	}
	// Another architecture's weights, a truncated model file.
	os.MkdirAll(p("other"), 0o755)
	os.WriteFile(p("other/config.yaml"), []byte("model: {mode: sli2vol, width: 8, stages: 1, blocks_per_stage: 1, feature_dim: 4, radius: 2}\n"), 0o644)
	mb, _ := os.ReadFile(p("run/model.pt"))
	os.WriteFile(p("other/model.pt"), mb, 0o644)
	os.MkdirAll(p("trunc"), 0o755)
	cb, _ := os.ReadFile(p("run/config.yaml"))
	os.WriteFile(p("trunc/config.yaml"), cb, 0o644)
	os.WriteFile(p("trunc/model.pt"), mb[:len(mb)/2], 0o644)

	raw := nii(t, img)
	rawLab := nii(t, ann)
	nan := append([]byte(nil), raw...)
	binary.LittleEndian.PutUint16(nan[offDatatype:], 16) // float32: voxel bytes now read as floats
	binary.LittleEndian.PutUint16(nan[offDatatype+2:], 32)
	nan = append(nan, make([]byte, len(raw)-352)...)
	binary.LittleEndian.PutUint32(nan[352:], math.Float32bits(float32(math.NaN())))
	shifted := append([]byte(nil), rawLab...)
	binary.LittleEndian.PutUint32(shifted[280+12:], math.Float32bits(55)) // srow_x offset: 5.5 cm away
	hugeID := append([]byte(nil), rawLab...)
	binary.LittleEndian.PutUint16(hugeID[offDatatype:], 64) // float64 labels
	binary.LittleEndian.PutUint16(hugeID[offDatatype+2:], 64)
	hugeID = append(hugeID[:352], make([]byte, 8*(len(rawLab)-352))...)
	binary.LittleEndian.PutUint64(hugeID[352:], math.Float64bits(3e9))
	bigger := setDim(rawLab, 3, 11)
	bigger = bigger[:352+(len(rawLab)-352)*11/12]
	os.MkdirAll(p("emptydir"), 0o755)
	os.MkdirAll(p("nolabel/imagesTr"), 0o755)
	os.MkdirAll(p("nolabel/labelsTr"), 0o755)
	os.WriteFile(p("nolabel/imagesTr/x.nii.gz"), gz(raw), 0o644)
	badCfg := write("bad.yaml", []byte("train:\n  lrr: 1\n"))
	badType := write("badtype.yaml", []byte("model:\n  radius: wide\n"))
	badPatch := write("badpatch.yaml", []byte("unetr: {patch_size: [16, 30, 32]}\n"))

	type tc struct {
		name, want, names string
		args              []string
	}
	seg := func(image, annotation string, extra ...string) []string {
		return append([]string{"segment", "--model", p("run"), "--image", image, "--annotation", annotation, "--out", p("out.nii.gz")}, extra...)
	}
	cases := []tc{
		{"not nifti", "not a NIfTI file", "notes.nii", seg(write("notes.nii", []byte("plain text, no header here at all; certainly not NIfTI")), ann)},
		{"bad magic", "bad NIfTI-1 magic", "magic.nii", seg(write("magic.nii", func() []byte { c := append([]byte(nil), raw...); copy(c[offMagic:], "abc"); return c }()), ann)},
		{"truncated gz", "", "trunc.nii.gz", seg(write("trunc.nii.gz", gz(raw)[:len(gz(raw))/2]), ann)},
		{"gz trailing garbage", "corrupt gzip", "trail.nii.gz", seg(write("trail.nii.gz", append(gz(raw), "garbage"...)), ann)},
		{"dims vs data size", "truncated: header dims", "short.nii", seg(write("short.nii", raw[:len(raw)-100]), ann)},
		{"negative dim", "dim[2] is -32", "neg.nii", seg(write("neg.nii", setDim(raw, 2, -32)), ann)},
		{"zero dim", "dim[1] is 0", "zero.nii", seg(write("zero.nii", setDim(raw, 1, 0)), ann)},
		{"unsupported datatype", "unsupported voxel datatype 32", "cplx.nii", seg(write("cplx.nii", func() []byte {
			c := append([]byte(nil), raw...)
			binary.LittleEndian.PutUint16(c[offDatatype:], 32)
			return c
		}()), ann)},
		{"NaN voxels", "NaN or infinite voxels", "nan.nii", seg(write("nan.nii", nan), ann)},
		{"2D image", "2D image", "flat.nii", seg(write("flat.nii", setDim(raw, 0, 2)), ann)},
		{"4D T>1", "4D image with 2 volumes", "t2.nii", seg(write("t2.nii", append(setDim(setDim(raw, 0, 4), 4, 2), raw[352:]...)), ann)},
		{"grid mismatch shape", "does not lie on the grid", "bigger.nii", seg(img, write("bigger.nii", bigger))},
		{"grid mismatch affine", "does not lie on the grid", "shifted.nii", seg(img, write("shifted.nii", shifted))},
		{"empty annotation", "annotation is empty", "empty-ann.nii.gz", seg(img, empty)},
		{"two annotated slices", "2 slices are labelled", "ann2.nii.gz", seg(img, ann2)},
		{"slice out of range", "slice 99 is out of range", "ann2.nii.gz", seg(img, ann2, "--slice", "99")},
		{"label id too large", "outside 0..2147483647", "huge.nii", seg(img, write("huge.nii", hugeID))},
		{"image folder without DICOM", "no DICOM files", "emptydir", seg(p("emptydir"), ann)},
		{"output folder missing", "does not exist", "nowhere", append(seg(img, ann)[:len(seg(img, ann))-1], p("nowhere/out.nii.gz"))},
		{"output is the image", "output is an input file", "phantom_000.nii.gz", append(seg(img, ann)[:len(seg(img, ann))-1], img, "--force")},
		{"output is the annotation", "output is an input file", "ann.nii.gz", append(seg(img, ann)[:len(seg(img, ann))-1], ann, "--force")},
		{"model of another architecture", "shape", "other", []string{"segment", "--model", p("other"), "--image", img, "--annotation", ann, "--out", p("out.nii.gz")}},
		{"truncated model file", "not a readable state dict", "model.pt", []string{"segment", "--model", p("trunc"), "--image", img, "--annotation", ann, "--out", p("out.nii.gz")}},
		{"missing model folder", "no such file", "ghost", []string{"segment", "--model", p("ghost"), "--image", img, "--annotation", ann, "--out", p("out.nii.gz")}},
		{"empty dataset folder", "no NIfTI images", "emptydir", []string{"train", "--data", p("emptydir"), "--out", p("r2")}},
		{"missing label for an image", "no label for this image", "x.nii.gz", []string{"evaluate", "--data", p("nolabel"), "--out", p("rep")}},
		{"config unknown key", "unknown key train.lrr", "bad.yaml", []string{"config", "show", "--config", badCfg}},
		{"config wrong type", "'model.radius'", "badtype.yaml", []string{"train", "--config", badType, "--data", p("ds"), "--out", p("r3")}},
		{"missing input file", "no such file", "absent.nii.gz", seg(p("absent.nii.gz"), ann)},
		// UNETR++ commands.
		{"refine: no pseudo-label for a case", "none for case phantom_000", "emptydir", []string{"refine", "--config", cfg, "--data", p("ds"), "--pseudo", p("emptydir"), "--out", p("refined")}},
		{"refine: output is the pseudo-label folder", "never overwrite their input", "emptydir", []string{"refine", "--config", cfg, "--data", p("ds"), "--pseudo", p("emptydir"), "--out", p("emptydir")}},
		{"refine: estimate model is a CFN run", "not a UNETR++ run", "run", append(seg(img, ann), "--estimate", "model", "--estimate-model", p("run"))},
		{"estimate model without a network", "needs --estimate-model", "--estimate-model", append(seg(img, ann), "--estimate", "model")},
		{"train-fsss without labels", "no label for this image", "nolabel", []string{"train-fsss", "--config", cfg, "--data", p("nolabel"), "--out", p("fsss")}},
		{"unetr patch not a multiple", "multiple of 8", "badpatch.yaml", []string{"train-fsss", "--config", badPatch, "--data", p("ds"), "--out", p("fsss")}},
	}
	os.MkdirAll(p("notdicom"), 0o755)
	os.WriteFile(p("notdicom/readme.txt"), []byte("not a DICOM file"), 0o644)
	cases = append(cases, tc{"folder without readable DICOM", "no readable DICOM image", "notdicom", seg(p("notdicom"), ann)})
	if !torchx.CUDAAvailable() {
		cases = append(cases, tc{"cuda on a CPU build", "has no CUDA", "cuda", append(seg(img, ann), "--device", "cuda")})
	}
	if len(cases) < 25 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			os.Remove(p("out.nii.gz"))
			code, out, errOut := runCLI(t, c.args...)
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], "sli2vol: ") {
				t.Fatalf("exit %d, stderr %q (stdout %q)", code, errOut, out)
			}
			if !strings.Contains(lines[0], c.want) || !strings.Contains(lines[0], c.names) {
				t.Fatalf("message %q lacks %q or %q", lines[0], c.want, c.names)
			}
			if _, err := os.Stat(p("out.nii.gz")); err == nil {
				t.Fatal("an output file was written")
			}
		})
	}
	// An existing output is left alone without --force.
	os.WriteFile(p("keep.nii.gz"), []byte("mine"), 0o644)
	code, _, errOut := runCLI(t, "segment", "--model", p("run"), "--image", img, "--annotation", ann, "--out", p("keep.nii.gz"))
	if b, _ := os.ReadFile(p("keep.nii.gz")); code != 2 || string(b) != "mine" || !strings.Contains(errOut, "--force") {
		t.Fatalf("existing output: exit %d, %q, content %q", code, errOut, b)
	}
}
