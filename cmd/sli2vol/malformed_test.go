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
	"github.com/sli2vol/sli2vol/internal/filehash"
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

// malformed holds the files the malformed-input cases start from: a phantom, annotations
// of one and two slices, an empty one, a tiny trained run and damaged copies of it.
type malformed struct {
	t                          *testing.T
	dir                        string
	img, ann, ann2, empty, cfg string
	raw, rawLab                []byte
}

type malformedCase struct {
	name, want, names string
	args              []string
}

func (m *malformed) p(s string) string { return filepath.Join(m.dir, s) }

func (m *malformed) write(name string, b []byte) string {
	if err := os.WriteFile(m.p(name), b, 0o644); err != nil {
		m.t.Fatal(err)
	}
	return m.p(name)
}

func (m *malformed) seg(image, annotation string, extra ...string) []string {
	return append([]string{"segment", "--model", m.p("run"), "--image", image, "--annotation", annotation, "--out", m.p("out.nii.gz")}, extra...)
}

func newMalformed(t *testing.T) *malformed {
	m := &malformed{t: t, dir: t.TempDir()}
	// A valid phantom, an annotation of one slice, a tiny trained model.
	if err := data.WritePhantomDataset(m.p("ds"), 1, 1, [3]int{32, 32, 12}, data.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	m.img = m.p("ds/imagesTr/phantom_000.nii.gz")
	lab, _ := data.LoadLabels(m.p("ds/labelsTr/phantom_000.nii.gz"), data.DefaultLimits)
	s, _ := data.NewSlicer(&lab.Geometry, -1)
	one := make([]int32, len(lab.Data))
	data.SetSlice(s, one, 6, data.Slice(s, lab.Data, 6))
	m.ann = m.p("ann.nii.gz")
	data.WriteLabels(m.ann, one, &lab.Geometry, data.WriteOptions{})
	two := append([]int32(nil), one...)
	data.SetSlice(s, two, 8, data.Slice(s, lab.Data, 8))
	m.ann2 = m.p("ann2.nii.gz")
	data.WriteLabels(m.ann2, two, &lab.Geometry, data.WriteOptions{})
	m.empty = m.p("empty-ann.nii.gz")
	data.WriteLabels(m.empty, make([]int32, len(lab.Data)), &lab.Geometry, data.WriteOptions{})
	m.cfg = m.write("tiny.yaml", []byte("device: cpu\ndata: {resize_range: [32, 34], crop: 32}\n"+
		"model: {mode: sli2vol, width: 4, stages: 1, blocks_per_stage: 1, feature_dim: 4, radius: 2}\ntrain: {batch_size: 4, epochs: 1}\n"))
	if code, o, e := runCLI(t, "train", "--config", m.cfg, "--data", m.p("ds"), "--out", m.p("run")); code != 0 {
		t.Fatalf("train: %s %s", o, e)
	}
	// Another architecture's weights, a truncated model file.
	os.MkdirAll(m.p("other"), 0o755)
	os.WriteFile(m.p("other/config.yaml"), []byte("model: {mode: sli2vol, width: 8, stages: 1, blocks_per_stage: 1, feature_dim: 4, radius: 2}\n"), 0o644)
	mb, _ := os.ReadFile(m.p("run/model.pt"))
	os.WriteFile(m.p("other/model.pt"), mb, 0o644)
	os.MkdirAll(m.p("trunc"), 0o755)
	cb, _ := os.ReadFile(m.p("run/config.yaml"))
	os.WriteFile(m.p("trunc/config.yaml"), cb, 0o644)
	os.WriteFile(m.p("trunc/model.pt"), mb[:len(mb)/2], 0o644)
	// A run trained before scale.json was recorded.
	os.MkdirAll(m.p("noscale"), 0o755)
	os.WriteFile(m.p("noscale/config.yaml"), cb, 0o644)
	os.WriteFile(m.p("noscale/model.pt"), mb, 0o644)

	m.raw = nii(t, m.img)
	m.rawLab = nii(t, m.ann)
	return m
}

// niftiCases are broken NIfTI headers and voxels, and annotations off the image's grid.
func (m *malformed) niftiCases() []malformedCase {
	nan := append([]byte(nil), m.raw...)
	binary.LittleEndian.PutUint16(nan[offDatatype:], 16) // float32: voxel bytes now read as floats
	binary.LittleEndian.PutUint16(nan[offDatatype+2:], 32)
	nan = append(nan, make([]byte, len(m.raw)-352)...)
	binary.LittleEndian.PutUint32(nan[352:], math.Float32bits(float32(math.NaN())))
	shifted := append([]byte(nil), m.rawLab...)
	binary.LittleEndian.PutUint32(shifted[280+12:], math.Float32bits(55)) // srow_x offset: 5.5 cm away
	hugeID := append([]byte(nil), m.rawLab...)
	binary.LittleEndian.PutUint16(hugeID[offDatatype:], 64) // float64 labels
	binary.LittleEndian.PutUint16(hugeID[offDatatype+2:], 64)
	hugeID = append(hugeID[:352], make([]byte, 8*(len(m.rawLab)-352))...)
	binary.LittleEndian.PutUint64(hugeID[352:], math.Float64bits(3e9))
	bigger := setDim(m.rawLab, 3, 11)
	bigger = bigger[:352+(len(m.rawLab)-352)*11/12]
	return []malformedCase{
		{"not nifti", "not a NIfTI file", "notes.nii", m.seg(m.write("notes.nii", []byte("plain text, no header here at all; certainly not NIfTI")), m.ann)},
		{"bad magic", "bad NIfTI-1 magic", "magic.nii", m.seg(m.write("magic.nii", func() []byte { c := append([]byte(nil), m.raw...); copy(c[offMagic:], "abc"); return c }()), m.ann)},
		{"truncated gz", "", "trunc.nii.gz", m.seg(m.write("trunc.nii.gz", gz(m.raw)[:len(gz(m.raw))/2]), m.ann)},
		{"gz trailing garbage", "corrupt gzip", "trail.nii.gz", m.seg(m.write("trail.nii.gz", append(gz(m.raw), "garbage"...)), m.ann)},
		{"dims vs data size", "truncated: header dims", "short.nii", m.seg(m.write("short.nii", m.raw[:len(m.raw)-100]), m.ann)},
		{"negative dim", "dim[2] is -32", "neg.nii", m.seg(m.write("neg.nii", setDim(m.raw, 2, -32)), m.ann)},
		{"zero dim", "dim[1] is 0", "zero.nii", m.seg(m.write("zero.nii", setDim(m.raw, 1, 0)), m.ann)},
		{"unsupported datatype", "unsupported voxel datatype 32", "cplx.nii", m.seg(m.write("cplx.nii", func() []byte {
			c := append([]byte(nil), m.raw...)
			binary.LittleEndian.PutUint16(c[offDatatype:], 32)
			return c
		}()), m.ann)},
		{"NaN voxels", "NaN or infinite voxels", "nan.nii", m.seg(m.write("nan.nii", nan), m.ann)},
		{"2D image", "2D image", "flat.nii", m.seg(m.write("flat.nii", setDim(m.raw, 0, 2)), m.ann)},
		{"4D T>1", "4D image with 2 volumes", "t2.nii", m.seg(m.write("t2.nii", append(setDim(setDim(m.raw, 0, 4), 4, 2), m.raw[352:]...)), m.ann)},
		{"grid mismatch shape", "does not lie on the grid", "bigger.nii", m.seg(m.img, m.write("bigger.nii", bigger))},
		{"grid mismatch affine", "does not lie on the grid", "shifted.nii", m.seg(m.img, m.write("shifted.nii", shifted))},
		{"label id too large", "outside 0..2147483647", "huge.nii", m.seg(m.img, m.write("huge.nii", hugeID))},
	}
}

// otherCases are bad annotations, outputs, models, datasets and configs.
func (m *malformed) otherCases() []malformedCase {
	os.MkdirAll(m.p("emptydir"), 0o755)
	os.MkdirAll(m.p("nolabel/imagesTr"), 0o755)
	os.MkdirAll(m.p("nolabel/labelsTr"), 0o755)
	os.WriteFile(m.p("nolabel/imagesTr/x.nii.gz"), gz(m.raw), 0o644)
	badCfg := m.write("bad.yaml", []byte("train:\n  lrr: 1\n"))
	badType := m.write("badtype.yaml", []byte("model:\n  radius: wide\n"))
	badPatch := m.write("badpatch.yaml", []byte("unetr: {patch_size: [16, 30, 32]}\n"))

	cases := []malformedCase{
		{"empty annotation", "annotation is empty", "empty-ann.nii.gz", m.seg(m.img, m.empty)},
		{"slice out of range", "slice 99 is out of range", "ann2.nii.gz", m.seg(m.img, m.ann2, "--slice", "99")},
		{"image folder without DICOM", "no DICOM files", "emptydir", m.seg(m.p("emptydir"), m.ann)},
		{"output folder missing", "does not exist", "nowhere", append(m.seg(m.img, m.ann)[:len(m.seg(m.img, m.ann))-1], m.p("nowhere/out.nii.gz"))},
		{"output is the image", "output is an input file", "phantom_000.nii.gz", append(m.seg(m.img, m.ann)[:len(m.seg(m.img, m.ann))-1], m.img, "--force")},
		{"output is the annotation", "output is an input file", "ann.nii.gz", append(m.seg(m.img, m.ann)[:len(m.seg(m.img, m.ann))-1], m.ann, "--force")},
		{"model of another architecture", "shape", "other", []string{"segment", "--model", m.p("other"), "--image", m.img, "--annotation", m.ann, "--out", m.p("out.nii.gz")}},
		{"truncated model file", "not a readable state dict", "model.pt", []string{"segment", "--model", m.p("trunc"), "--image", m.img, "--annotation", m.ann, "--out", m.p("out.nii.gz")}},
		{"missing model folder", "no such file", "ghost", []string{"segment", "--model", m.p("ghost"), "--image", m.img, "--annotation", m.ann, "--out", m.p("out.nii.gz")}},
		{"empty dataset folder", "no NIfTI images", "emptydir", []string{"train", "--data", m.p("emptydir"), "--out", m.p("r2")}},
		{"missing label for an image", "no label for this image", "x.nii.gz", []string{"evaluate", "--data", m.p("nolabel"), "--out", m.p("rep")}},
		{"config unknown key", "unknown key train.lrr", "bad.yaml", []string{"config", "show", "--config", badCfg}},
		{"config wrong type", "'model.radius'", "badtype.yaml", []string{"train", "--config", badType, "--data", m.p("ds"), "--out", m.p("r3")}},
		{"missing input file", "no such file", "absent.nii.gz", m.seg(m.p("absent.nii.gz"), m.ann)},
		// UNETR++ commands.
		{"refine: no pseudo-label for a case", "none for case phantom_000", "emptydir", []string{"refine", "--config", m.cfg, "--data", m.p("ds"), "--pseudo", m.p("emptydir"), "--out", m.p("refined")}},
		{"refine: output is the pseudo-label folder", "never overwrite their input", "emptydir", []string{"refine", "--config", m.cfg, "--data", m.p("ds"), "--pseudo", m.p("emptydir"), "--out", m.p("emptydir")}},
		{"refine: estimate model is a CFN run", "not a UNETR++ run", "run", append(m.seg(m.img, m.ann), "--estimate", "model", "--estimate-model", m.p("run"))},
		{"estimate model without a network", "needs --estimate-model", "--estimate-model", append(m.seg(m.img, m.ann), "--estimate", "model")},
		{"spacing training without scale.json", "no scale.json", "noscale", []string{"segment", "--model", m.p("noscale"), "--image", m.img, "--annotation", m.ann, "--out", m.p("out.nii.gz"), "--spacing", "training"}},
		{"spacing training and resize", "choose one", "infer.resize 64", append(m.seg(m.img, m.ann), "--spacing", "training", "--resize", "64")},
		{"spacing unknown", "infer.spacing", "mm", append(m.seg(m.img, m.ann), "--spacing", "mm")},
		{"adapt mix above one", "infer.adapt_mix", "is 2", append(m.seg(m.img, m.ann), "--adapt-steps", "2", "--adapt-mix", "2")},
		{"train-fsss without labels", "no label for this image", "nolabel", []string{"train-fsss", "--config", m.cfg, "--data", m.p("nolabel"), "--out", m.p("fsss")}},
		{"unetr patch not a multiple", "multiple of 8", "badpatch.yaml", []string{"train-fsss", "--config", badPatch, "--data", m.p("ds"), "--out", m.p("fsss")}},
	}
	os.MkdirAll(m.p("notdicom"), 0o755)
	os.WriteFile(m.p("notdicom/readme.txt"), []byte("not a DICOM file"), 0o644)
	cases = append(cases, malformedCase{"folder without readable DICOM", "no readable DICOM image", "notdicom", m.seg(m.p("notdicom"), m.ann)})
	if !torchx.CUDAAvailable() {
		cases = append(cases, malformedCase{"cuda on a CPU build", "has no CUDA", "cuda", append(m.seg(m.img, m.ann), "--device", "cuda")})
	}
	return cases
}

// Malformed input: each case exits 2 with one line on stderr naming the file and the problem,
// writes no output, and does not panic.
func TestMalformedInputs(t *testing.T) {
	m := newMalformed(t)
	cases := append(m.niftiCases(), m.otherCases()...)
	if len(cases) < 25 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			os.Remove(m.p("out.nii.gz"))
			code, out, errOut := runCLI(t, c.args...)
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], "sli2vol: ") {
				t.Fatalf("exit %d, stderr %q (stdout %q)", code, errOut, out)
			}
			if !strings.Contains(lines[0], c.want) || !strings.Contains(lines[0], c.names) {
				t.Fatalf("message %q lacks %q or %q", lines[0], c.want, c.names)
			}
			if _, err := os.Stat(m.p("out.nii.gz")); err == nil {
				t.Fatal("an output file was written")
			}
		})
	}
	// The run records its scale, which --spacing training propagates at.
	if code, _, errOut := runCLI(t, append(m.seg(m.img, m.ann), "--spacing", "training")...); code != 0 {
		t.Fatalf("segment --spacing training: exit %d, %s", code, errOut)
	}
	if _, err := data.LoadLabels(m.p("out.nii.gz"), data.DefaultLimits); err != nil {
		t.Fatalf("segment --spacing training: %v", err)
	}
	// Test-time adaptation changes no file of the run it adapts (here with its weights mixed
	// back towards the run's, which the adaptation log states).
	before := folderDigest(t, m.p("run"))
	os.Remove(m.p("out.nii.gz"))
	if code, _, errOut := runCLI(t, append(m.seg(m.img, m.ann), "--adapt-steps", "2", "--adapt-lr", "1e-3", "--adapt-mix", "0.5")...); code != 0 || !strings.Contains(errOut, "adapted to") || !strings.Contains(errOut, "mix 0.5") {
		t.Fatalf("segment --adapt-steps 2 --adapt-mix 0.5: exit %d, %s", code, errOut)
	}
	if after := folderDigest(t, m.p("run")); after != before {
		t.Fatalf("adaptation changed the run folder: %v → %v", before, after)
	}
	// An existing output is left alone without --force.
	os.WriteFile(m.p("keep.nii.gz"), []byte("mine"), 0o644)
	code, _, errOut := runCLI(t, "segment", "--model", m.p("run"), "--image", m.img, "--annotation", m.ann, "--out", m.p("keep.nii.gz"))
	if b, _ := os.ReadFile(m.p("keep.nii.gz")); code != 2 || string(b) != "mine" || !strings.Contains(errOut, "--force") {
		t.Fatalf("existing output: exit %d, %q, content %q", code, errOut, b)
	}
}

// folderDigest is the digest of dir's files (names and contents), computed afresh.
func folderDigest(t *testing.T, dir string) filehash.Digest {
	d, err := new(filehash.Cache).Sum(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
