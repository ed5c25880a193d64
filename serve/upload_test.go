package serve

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/frame"
	"github.com/suyashkumar/dicom/pkg/tag"
	"github.com/suyashkumar/dicom/pkg/uid"

	"github.com/sli2vol/sli2vol/data"
)

// dicomSlice encodes one axial slice of a series: rows×cols int16 pixels k·100 + r·10 + c,
// 0.7 mm pixels, slices 2 mm apart along z.
func dicomSlice(t testing.TB, k, rows, cols int) []byte {
	px := make([]uint16, rows*cols)
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			px[r*cols+c] = uint16(int16(k*100 + r*10 + c))
		}
	}
	el := func(tg tag.Tag, v any) *dicom.Element {
		e, err := dicom.NewElement(tg, v)
		if err != nil {
			t.Fatalf("%v: %v", tg, err)
		}
		return e
	}
	ds := dicom.Dataset{Elements: []*dicom.Element{
		el(tag.MediaStorageSOPClassUID, []string{"1.2.840.10008.5.1.4.1.1.2"}),
		el(tag.MediaStorageSOPInstanceUID, []string{fmt.Sprintf("1.2.9.%d", k)}),
		el(tag.TransferSyntaxUID, []string{uid.ExplicitVRLittleEndian}),
		el(tag.SeriesInstanceUID, []string{"1.2.9"}),
		el(tag.ImagePositionPatient, []string{"0", "0", fmt.Sprint(2 * k)}),
		el(tag.ImageOrientationPatient, []string{"1", "0", "0", "0", "1", "0"}),
		el(tag.PixelSpacing, []string{"0.7", "0.7"}),
		el(tag.Rows, []int{rows}), el(tag.Columns, []int{cols}),
		el(tag.BitsAllocated, []int{16}), el(tag.BitsStored, []int{16}),
		el(tag.PixelRepresentation, []int{1}), el(tag.SamplesPerPixel, []int{1}),
		el(tag.NumberOfFrames, []string{"1"}),
		el(tag.PixelData, dicom.PixelDataInfo{Frames: []*frame.Frame{{NativeData: &frame.NativeFrame[uint16]{
			InternalBitsPerSample: 16, InternalRows: rows, InternalCols: cols, InternalSamplesPerPixel: 1, RawData: px,
		}}}}),
	}}
	var b bytes.Buffer
	if err := dicom.Write(&b, ds, dicom.SkipVRVerification()); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// dicomZip is a zipped series of n slices in a subfolder (as archivers make them), with a
// hidden file and macOS metadata that must be skipped.
func dicomZip(t testing.TB, n, rows, cols int) []byte {
	files := map[string][]byte{"series/.DS_Store": []byte("x"), "__MACOSX/series/._IM0": []byte("x")}
	for k := 0; k < n; k++ {
		files[fmt.Sprintf("series/IM%d", k)] = dicomSlice(t, k, rows, cols)
	}
	return zipOf(t, files)
}

// A zipped DICOM series uploads as a volume with the series' grid, sliced axially; its image
// comes back as NIfTI with the geometry the DICOM reader gives the same files on disk.
func TestUploadDICOMZip(t *testing.T) {
	_, c := start(t, Options{})
	sid := c.session()
	v := c.upload(sid, "series.zip", dicomZip(t, 6, 8, 10))
	if fmt.Sprint(v["dims"]) != "[10 8 6]" || v["plane"] != "axial" || v["slices"] != 6.0 || fmt.Sprint(v["spacing"]) != "[0.7 0.7 2]" {
		t.Fatalf("DICOM volume: %v", v)
	}
	dir := t.TempDir()
	for k := 0; k < 6; k++ {
		os.WriteFile(filepath.Join(dir, fmt.Sprint(k)), dicomSlice(t, k, 8, 10), 0o644)
	}
	want, err := data.LoadDICOMSeries(dir, "", data.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	r := c.do("GET", "/api/sessions/"+sid+"/volumes/"+v["volume"].(string)+"/image.nii.gz", nil)
	got, err := data.ReadImage("image", bytes.NewReader(r.body), data.DefaultLimits)
	if err != nil || got.SameGrid(&want.Geometry, 1e-4) != nil || fmt.Sprint(got.Data) != fmt.Sprint(want.Data) {
		t.Fatalf("image of a DICOM upload: %v", err)
	}
	// Over the uncompressed limit of a zip: refused.
	_, small := start(t, Options{Limits: Limits{MaxZipBytes: 2000}})
	if r := small.do("POST", "/api/sessions/"+small.session()+"/volumes?name=s.zip", dicomZip(t, 6, 8, 10)); r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("zip over the uncompressed limit: %d %s", r.status, r.body)
	}
}

// FuzzUpload feeds arbitrary bytes to the upload decoder: it must return a volume or an
// error, never panic, hang or allocate past its limits. The seeds (a tiny valid .nii.gz,
// a truncated one, a raw header, a bad zip, a zipped DICOM series) run as a normal test.
func FuzzUpload(f *testing.F) {
	img, _, g := data.Phantom([3]int{6, 5, 4}, 1)
	valid := gzipped(f, func(w io.Writer) error { return data.EncodeImage(w, img, &g) })
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	var raw bytes.Buffer
	data.EncodeImage(&raw, img, &g)
	f.Add(raw.Bytes()[:352])
	f.Add(append([]byte("PK\x03\x04"), valid...))
	f.Add(dicomZip(f, 2, 3, 4))
	tmp := f.TempDir()
	lim := uploadLimits{voxels: 1 << 16, zipBytes: 1 << 20, zipFiles: 64}
	f.Fuzz(func(t *testing.T, body []byte) {
		v, err := decodeVolume("fuzz", bytes.NewReader(body), tmp, lim)
		if err == nil && (v.NumVoxels() > 1<<16 || len(v.Data) != v.NumVoxels()) {
			t.Fatalf("decoded %v with %d voxels", v.Shape, len(v.Data))
		}
		if err != nil && statusOf(err) >= 500 {
			t.Fatalf("a bad upload is a server error: %v", err)
		}
	})
}
