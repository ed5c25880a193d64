package data

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"
)

// decodeBytes is the reader path from bytes (gzip detected by content), as LoadImage takes it.
func decodeBytes(b []byte) (*Header, []byte, error) {
	br := bufio.NewReader(bytes.NewReader(b))
	gz := len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b
	if gz {
		z, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, err
		}
		return readStream("fuzz", z, true, Limits{MaxVoxels: 1 << 20})
	}
	return readStream("fuzz", br, false, Limits{MaxVoxels: 1 << 20})
}

// FuzzNIfTI: no input makes the reader panic, allocate past the voxel limit, or return voxel
// data that does not match the header. Run with `make fuzz` (FUZZTIME per target).
func FuzzNIfTI(f *testing.F) {
	dir := f.TempDir()
	g := NewGeometry([3]int{4, 3, 2}, [3]float64{1, 1, 2}, [3]float64{})
	ids := make([]int32, 24)
	for i := range ids {
		ids[i] = int32(i % 5)
	}
	for _, name := range []string{"a.nii", "a.nii.gz"} {
		p := filepath.Join(dir, name)
		WriteLabels(p, ids, &g, WriteOptions{})
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	big := make([]int32, 24)
	big[3] = 12175
	p := filepath.Join(dir, "b.nii")
	WriteLabels(p, big, &g, WriteOptions{})
	b, _ := os.ReadFile(p)
	f.Add(b)
	pi := filepath.Join(dir, "i.nii")
	WriteImageInt16(pi, make([]float32, 24), &g, WriteOptions{})
	b, _ = os.ReadFile(pi)
	f.Add(b)
	f.Fuzz(func(t *testing.T, in []byte) {
		h, raw, err := decodeBytes(in)
		if err != nil {
			return
		}
		if h.NumVoxels() > 1<<20 {
			t.Fatalf("accepted %d voxels past the limit", h.NumVoxels())
		}
		if int64(len(raw)) != h.dataBytes() {
			t.Fatalf("%d voxel bytes for a header needing %d", len(raw), h.dataBytes())
		}
		n := 0
		decode(h, raw, func(i int, v float64) { n++ })
		if int64(n) != h.NumVoxels() {
			t.Fatalf("decoded %d of %d voxels", n, h.NumVoxels())
		}
		_ = h.affine()
	})
}

// FuzzDICOM: no input makes the DICOM slice reader (parser, pixel decoding, geometry) panic.
func FuzzDICOM(f *testing.F) {
	dir := f.TempDir()
	writeSeriesF(f, dir)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := parseDICOMSlice("fuzz.dcm", in)
		if err != nil {
			return
		}
		if len(s.pixels) != s.rows*s.cols {
			t.Fatalf("%d pixels for %d×%d", len(s.pixels), s.rows, s.cols)
		}
	})
}
