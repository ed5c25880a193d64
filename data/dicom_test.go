package data

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func copyFile(t *testing.T, src, dst string) {
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The TotalSegmentator DICOM series read as a volume has the shape and affine (to 1e-3 mm)
// of the label volume made from it; shuffled file names give the same volume.
func TestRealDICOMSeries(t *testing.T) {
	root := realData(t)
	dir := filepath.Join(root, "ts-abdomen-ct", "dicom", "ct")
	img, err := LoadImage(dir, DefaultLimits) // JPEG 2000 lossless frames
	if err != nil {
		t.Fatal(err)
	}
	lab, err := LoadLabels(filepath.Join(root, "ts-abdomen-ct", "dicom", "label", "ts_dicom_001.nii.gz"), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if err := img.SameGrid(&lab.Geometry, 1e-3); err != nil {
		t.Fatalf("DICOM volume vs its label volume: %v\nDICOM affine %v\nlabel affine %v", err, img.Affine, lab.Affine)
	}
	if !LooksLikeCT(img.Data) {
		t.Error("rescaled DICOM CT does not look like HU")
	}
	// Shuffle: the same files under random names in random order.
	entries, _ := os.ReadDir(dir)
	shuffled := t.TempDir()
	r := rand.New(rand.NewSource(1))
	for i, p := range r.Perm(len(entries)) {
		copyFile(t, filepath.Join(dir, entries[p].Name()), filepath.Join(shuffled, fmt.Sprintf("%03d", i)))
	}
	os.WriteFile(filepath.Join(shuffled, "README.txt"), []byte("not DICOM"), 0o644)
	again, err := LoadImage(shuffled, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if again.Affine != img.Affine {
		t.Fatalf("shuffled affine %v vs %v", again.Affine, img.Affine)
	}
	for i := range img.Data {
		if img.Data[i] != again.Data[i] {
			t.Fatalf("shuffled files give another volume (voxel %d)", i)
		}
	}
	// A mask written for the DICOM image is NIfTI on the same grid.
	out := filepath.Join(t.TempDir(), "mask.nii.gz")
	if err := WriteLabels(out, make([]int32, img.NumVoxels()), &img.Geometry, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	m, err := LoadLabels(out, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SameGrid(&lab.Geometry, 1e-3); err != nil {
		t.Fatalf("mask for a DICOM input: %v", err)
	}
}

func TestDICOMFolderErrors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("hello"), 0o644)
	if _, err := LoadImage(dir, DefaultLimits); err == nil || !strings.Contains(err.Error(), "no readable DICOM image") {
		t.Fatalf("folder without DICOM: %v", err)
	}
	empty := t.TempDir()
	if _, err := LoadImage(empty, DefaultLimits); err == nil || !strings.Contains(err.Error(), "no DICOM files") {
		t.Fatalf("empty folder: %v", err)
	}
}
