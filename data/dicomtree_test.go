package data

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/frame"
	"github.com/suyashkumar/dicom/pkg/tag"
	"github.com/suyashkumar/dicom/pkg/uid"
)

var axial = [6]float64{1, 0, 0, 0, 1, 0}

// writeTreeSeries writes an n-slice rows×cols series into root/dir (see writeSeries), its
// files named with prefix so that two series can share a folder.
func writeTreeSeries(t testing.TB, root, dir, series, prefix string, n, rows, cols int) string {
	d := filepath.Join(root, dir)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	writeSeries(t, d, series, n, rows, cols, axial, [3]float64{1, 2, 3}, [3]float64{0, 0, 2},
		func(k int) string { return fmt.Sprintf("%s%02d.dcm", prefix, k) })
	return d
}

// writeDICOMFile writes one file in transfer syntax ts: extra elements (kept before the
// series UID in the file, as their tags are lower), the series UID, and when rows > 0 a
// rows×2 image.
func writeDICOMFile(t testing.TB, path, ts, series string, rows int, extra ...*dicom.Element) {
	els := []*dicom.Element{
		el(t, tag.MediaStorageSOPClassUID, []string{"1.2.840.10008.5.1.4.1.1.2"}),
		el(t, tag.MediaStorageSOPInstanceUID, []string{"1.2.3.4"}),
		el(t, tag.TransferSyntaxUID, []string{ts}),
	}
	els = append(els, extra...)
	els = append(els, el(t, tag.SeriesInstanceUID, []string{series}))
	if rows > 0 {
		els = append(els,
			el(t, tag.ImagePositionPatient, []string{"0", "0", "0"}),
			el(t, tag.ImageOrientationPatient, []string{"1", "0", "0", "0", "1", "0"}),
			el(t, tag.PixelSpacing, []string{"1", "1"}),
			el(t, tag.Rows, []int{rows}), el(t, tag.Columns, []int{2}),
			el(t, tag.BitsAllocated, []int{16}), el(t, tag.BitsStored, []int{16}),
			el(t, tag.PixelRepresentation, []int{0}), el(t, tag.SamplesPerPixel, []int{1}),
			el(t, tag.PixelData, dicom.PixelDataInfo{Frames: []*frame.Frame{{NativeData: &frame.NativeFrame[uint16]{
				InternalBitsPerSample: 16, InternalRows: rows, InternalCols: 2, InternalSamplesPerPixel: 1, RawData: make([]uint16, 2*rows),
			}}}}))
	}
	var b bytes.Buffer
	if err := dicom.Write(&b, dicom.Dataset{Elements: els}, dicom.SkipVRVerification()); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeLabelOn writes an all-zero label volume on the grid of series uid in dir.
func writeLabelOn(t *testing.T, path, dir, uid string) {
	img, err := LoadDICOMSeries(dir, uid, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteLabels(path, make([]int32, img.NumVoxels()), &img.Geometry, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// Three patients, four folders, five series (two in one folder, one without its UID), with
// labels, an annotation, and what a tree also holds: hidden folders, notes, a converted
// volume, a non-image DICOM object. Each series is a case with the expected ID, UID, label
// and annotation; each case's image is its own series, voxel for voxel, as written.
func TestDICOMTree(t *testing.T) {
	root := t.TempDir()
	want := []struct {
		id, dir, uid, label, ann string
		n, rows, cols            int
	}{
		{"pat1_ct", "pat1/ct", "1.2.826.0.1.1", "pat1/ct/seg.nii.gz", "", 3, 4, 5},
		{"pat1_pet", "pat1/pet", "1.2.826.0.1.2", "", "pat1/pet/annotation.nii.gz", 2, 3, 3},
		{"pat2_study_00000001", "pat2/study", "1.2.826.0.2.100000001", "", "", 4, 3, 4},
		{"pat2_study_00000002", "pat2/study", "1.2.826.0.2.100000002", "pat2/study/00000002_seg.nii.gz", "", 2, 5, 3},
		{"pat3_anon", "pat3/anon", "", "pat3/anon/mask.nii.gz", "", 2, 2, 3}, // UID blanked by an anonymiser
	}
	for i, w := range want {
		writeTreeSeries(t, root, w.dir, w.uid, fmt.Sprintf("s%d_", i), w.n, w.rows, w.cols)
	}
	writeTreeSeries(t, root, ".trash/old", "1.2.9.9", "x", 2, 3, 3) // hidden: not a case
	// A DICOM object without an image (a report, a DICOMDIR) is no series.
	writeDICOMFile(t, filepath.Join(root, "pat1", "ct", "report.dcm"), uid.ExplicitVRLittleEndian, "1.2.826.0.1.99", 0)
	writeLabelOn(t, filepath.Join(root, "pat1", "ct", "seg.nii.gz"), filepath.Join(root, "pat1", "ct"), want[0].uid)
	writeLabelOn(t, filepath.Join(root, "pat2", "study", "00000002_seg.nii.gz"), filepath.Join(root, "pat2", "study"), want[3].uid)
	writeLabelOn(t, filepath.Join(root, "pat3", "anon", "mask.nii.gz"), filepath.Join(root, "pat3", "anon"), "")
	touch(t, filepath.Join(root, "pat1", "pet", "annotation.nii.gz"), filepath.Join(root, "pat2", "study", "ct.nii.gz"),
		filepath.Join(root, "notes.txt"), filepath.Join(root, "pat1", "ct", ".DS_Store"))

	d, err := OpenDataset(root)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != filepath.Base(root) || len(d.Cases) != len(want) {
		t.Fatalf("dataset %q with %d cases: %+v", d.Name, len(d.Cases), d.Cases)
	}
	rel := func(p string) string {
		if p == "" {
			return ""
		}
		return filepath.Join(root, p)
	}
	for i, w := range want {
		c := d.Cases[i]
		exp := Case{ID: w.id, Image: rel(w.dir), Series: w.uid, Label: rel(w.label), Annotation: rel(w.ann), Slice: -1, Split: "train"}
		if c != exp {
			t.Errorf("case %d:\n got %+v\nwant %+v", i, c, exp)
			continue
		}
		img, lab, err := LoadCase(c, DefaultLimits)
		if err != nil {
			t.Fatalf("%s: %v", c.ID, err)
		}
		if (lab != nil) != (w.label != "") {
			t.Errorf("%s: labels %v, want a label: %v", c.ID, lab != nil, w.label != "")
		}
		if img.Shape != [3]int{w.cols, w.rows, w.n} {
			t.Fatalf("%s: shape %v, want %d×%d×%d", c.ID, img.Shape, w.cols, w.rows, w.n)
		}
		for k := 0; k < w.n; k++ { // writeSeries' values: rows stored bottom-up, rescaled
			for r := 0; r < w.rows; r++ {
				for cc := 0; cc < w.cols; cc++ {
					if got, x := img.Data[img.Index(cc, w.rows-1-r, k)], float32(2*(k*100+r*10+cc-50)-1000); got != x {
						t.Fatalf("%s: voxel (%d,%d,%d) = %g, want %g", c.ID, cc, r, k, got, x)
					}
				}
			}
		}
		ref, err := LoadDICOMSeries(c.Image, w.uid, DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		if ref.Affine != img.Affine || !slices.Equal(ref.Data, img.Data) {
			t.Errorf("%s: the case's image differs from LoadDICOMSeries(%s, %s)", c.ID, c.Image, w.uid)
		}
	}
	// The folder of two series needs the case's Series: the plain loader asks which.
	if _, err := LoadImage(filepath.Join(root, "pat2", "study"), DefaultLimits); err == nil || !strings.Contains(err.Error(), "holds 2 series") {
		t.Fatalf("plain load of a two-series folder: %v", err)
	}
}

// A tree without a usable series, or with IDs or sidecar files it cannot resolve, is a
// one-line error naming the folder or file at fault.
func TestDICOMTreeErrors(t *testing.T) {
	cases := []struct {
		name  string
		build func(root string) string // returns what the error must name
		want  string
	}{
		{"empty", func(root string) string { return root }, "no NIfTI images or DICOM series found"},
		{"no DICOM", func(root string) string {
			touch(t, filepath.Join(root, "a.txt"), filepath.Join(root, "sub", "b.bin"), filepath.Join(root, ".hidden", "c.dcm"))
			return root
		}, "no NIfTI images or DICOM series found"},
		{"only an unreadable DICOM file", func(root string) string {
			p := filepath.Join(root, "sub", "x.dcm")
			os.MkdirAll(filepath.Dir(p), 0o755)
			b := append(make([]byte, 128), "DICM\x02\x00\x10\x00UI\xff\x7f"...) // declares 32 KB, holds 0
			os.WriteFile(p, b, 0o644)
			return p
		}, "no readable DICOM series (first problem: "},
		{"colliding IDs", func(root string) string {
			writeTreeSeries(t, root, "a_b", "1.2.1", "s", 2, 2, 2)
			writeTreeSeries(t, root, "a/b", "1.2.2", "s", 2, 2, 2)
			return filepath.Join(root, "a_b")
		}, `case id "a_b" names series in`},
		{"a bare label in a folder of two series", func(root string) string {
			writeTreeSeries(t, root, "p", "1.2.100000001", "a", 2, 2, 2)
			writeTreeSeries(t, root, "p", "1.2.100000002", "b", 2, 2, 2)
			touch(t, filepath.Join(root, "p", "label.nii.gz"))
			return filepath.Join(root, "p", "label.nii.gz")
		}, "the folder holds 2 series (00000001, 00000002)"},
		{"images without a UID beside a series", func(root string) string {
			writeTreeSeries(t, root, "p", "1.2.1", "a", 2, 2, 2)
			writeTreeSeries(t, root, "p", "", "b", 2, 2, 2) // blanked by an anonymiser
			return filepath.Join(root, "p")
		}, "2 DICOM images without a SeriesInstanceUID beside 1 other series"},
		{"two labels for one series", func(root string) string {
			writeTreeSeries(t, root, "p", "1.2.1", "a", 2, 2, 2)
			touch(t, filepath.Join(root, "p", "seg.nii.gz"), filepath.Join(root, "p", "x_mask.nii.gz"))
			return filepath.Join(root, "p", "x_mask.nii.gz")
		}, `a second label file for series "1.2.1" (the first: seg.nii.gz)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			named := c.build(root)
			_, err := OpenDataset(root)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), named) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("want one line naming %s with %q, got %v", named, c.want, err)
			}
		})
	}
}

// The header scan reads the same SeriesInstanceUID and Rows as the DICOM library reading the
// whole file, in every transfer syntax the series reader handles, past nested undefined-length
// sequences, with an odd-length (NUL-padded) UID, and with a header longer than the prefix it
// reads first. Files that are not DICOM are told apart from broken ones.
func TestDICOMHeaderScan(t *testing.T) {
	nested := el(t, tag.ReferencedImageSequence, [][]*dicom.Element{
		{el(t, tag.ReferencedSOPInstanceUID, []string{"1.2.3.4.5"}),
			el(t, tag.ProcedureCodeSequence, [][]*dicom.Element{{el(t, tag.CodeValue, []string{"(0020,000E)"})}})},
		{el(t, tag.ReferencedSOPInstanceUID, []string{"9.8.7"})},
	})
	long := el(t, tag.InstitutionAddress, []string{strings.Repeat("x", 3*headerPrefix/2)})
	variants := []struct {
		name, ts, series string
		extra            []*dicom.Element
	}{
		{"explicit little endian", uid.ExplicitVRLittleEndian, "1.2.840.1234.56", nil},
		{"implicit little endian", uid.ImplicitVRLittleEndian, "1.2.840.1234.56", nil},
		{"explicit, nested sequences, odd UID", uid.ExplicitVRLittleEndian, "1.2.3", []*dicom.Element{nested}},
		{"implicit, nested sequences", uid.ImplicitVRLittleEndian, "1.2.33", []*dicom.Element{nested}},
		{"header longer than the prefix", uid.ExplicitVRLittleEndian, "1.2.840.77", []*dicom.Element{long}},
	}
	dir := t.TempDir()
	buf := make([]byte, headerPrefix)
	for i, v := range variants {
		p := filepath.Join(dir, fmt.Sprintf("v%d.dcm", i))
		writeDICOMFile(t, p, v.ts, v.series, 3, v.extra...)
		h, err := readDICOMHeader(p, buf)
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		s, err := readDICOMSlice(p)
		if err != nil {
			t.Fatalf("%s: the library: %v", v.name, err)
		}
		if h.series != v.series || s.series != v.series || h.rows != 3 || s.rows != 3 {
			t.Errorf("%s: scan %q rows %d; library %q rows %d; want %q rows 3", v.name, h.series, h.rows, s.series, s.rows, v.series)
		}
	}
	// Big endian, which the series reader refuses, is refused by the scan too: a case the
	// loader could not read must not be listed.
	be := filepath.Join(dir, "be.dcm")
	writeDICOMFile(t, be, uid.ExplicitVRBigEndian, "1.2.4", 3)
	if _, err := readDICOMSlice(be); err == nil {
		t.Fatal("the series reader now reads big endian: let the scan accept it")
	}
	if _, err := readDICOMHeader(be, buf); err == nil || !strings.Contains(err.Error(), "big endian") {
		t.Errorf("big endian: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "text"), []byte("hello"), 0o644)
	if _, err := readDICOMHeader(filepath.Join(dir, "text"), buf); !errors.Is(err, errNotDICOM) {
		t.Errorf("a text file: %v", err)
	}
	whole, _ := os.ReadFile(filepath.Join(dir, "v0.dcm"))
	os.WriteFile(filepath.Join(dir, "cut"), whole[:200], 0o644) // cut inside the data set
	if _, err := readDICOMHeader(filepath.Join(dir, "cut"), buf); err == nil || errors.Is(err, errNotDICOM) {
		t.Errorf("a truncated file: %v", err)
	}
}

// A manifest entry may name one series of a DICOM folder; series on a NIfTI file is an error.
func TestManifestSeries(t *testing.T) {
	root := t.TempDir()
	dir := writeTreeSeries(t, root, "study", "1.2.5.1", "a", 3, 2, 4)
	writeTreeSeries(t, root, "study", "1.2.5.2", "b", 2, 2, 2)
	touch(t, filepath.Join(root, "x.nii.gz"))
	m := filepath.Join(root, "m.yaml")
	os.WriteFile(m, []byte("cases:\n  - image: study\n    series: 1.2.5.1\n"), 0o644)
	d, err := OpenDataset(m)
	if err != nil {
		t.Fatal(err)
	}
	c := d.Cases[0]
	if c.ID != "study" || c.Image != dir || c.Series != "1.2.5.1" {
		t.Fatalf("case %+v", c)
	}
	img, err := c.LoadImage(DefaultLimits)
	if err != nil || img.Shape != [3]int{4, 2, 3} {
		t.Fatalf("series 1.2.5.1: %v, %v", img, err)
	}
	os.WriteFile(m, []byte("cases:\n  - image: x.nii.gz\n    series: 1.2.5.1\n"), 0o644)
	if _, err := OpenDataset(m); err == nil || !strings.Contains(err.Error(), "is not a DICOM folder") {
		t.Fatalf("series on a NIfTI file: %v", err)
	}
}

// The header scan never panics or allocates from declared lengths, whatever the bytes.
func FuzzDICOMHeader(f *testing.F) {
	dir := f.TempDir()
	writeDICOMFile(f, filepath.Join(dir, "a"), uid.ImplicitVRLittleEndian, "1.2.3", 2)
	writeSeriesF(f, dir)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		parseDICOMHeader(b, true)
		parseDICOMHeader(b[:len(b)/2], false)
	})
}

// On a real series (JPEG 2000 CT, a scanner's element layout): the scan reads each file's UID
// and Rows as the DICOM library does, and the tree above it is one case, that series.
func TestRealDICOMTree(t *testing.T) {
	root := filepath.Join(realData(t), "ts-abdomen-ct", "dicom") // ct/ (the series), label/ (NIfTI)
	entries, err := os.ReadDir(filepath.Join(root, "ct"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, headerPrefix)
	series := ""
	for _, e := range entries {
		p := filepath.Join(root, "ct", e.Name())
		h, err := readDICOMHeader(p, buf)
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		ds, err := dicom.ParseFile(p, nil, dicom.SkipPixelData())
		if err != nil {
			t.Fatal(err)
		}
		u, _ := elemStrings(&ds, tag.SeriesInstanceUID)
		if h.series != strings.TrimSpace(u[0]) || h.rows != elemInt(&ds, tag.Rows, -1) {
			t.Fatalf("%s: scan %q rows %d; library %q rows %d", e.Name(), h.series, h.rows, u[0], elemInt(&ds, tag.Rows, -1))
		}
		series = h.series
	}
	d, err := OpenDataset(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Cases) != 1 || d.Cases[0].ID != "ct" || d.Cases[0].Series != series || d.Cases[0].Image != filepath.Join(root, "ct") {
		t.Fatalf("cases %+v, want one: ct, series %s", d.Cases, series)
	}
}
