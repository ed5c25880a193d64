package data

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/frame"
	"github.com/suyashkumar/dicom/pkg/tag"
	"github.com/suyashkumar/dicom/pkg/uid"
)

func el(t testing.TB, tg tag.Tag, v any) *dicom.Element {
	e, err := dicom.NewElement(tg, v)
	if err != nil {
		t.Fatalf("%v: %v", tg, err)
	}
	return e
}

// writeSeries writes an uncompressed series: n slices of rows×cols, pixel (r, c) of slice k
// stored as k·100 + r·10 + c − 50 (signed), rescaled by slope 2, intercept −1000.
func writeSeries(t testing.TB, dir, series string, n, rows, cols int, orient [6]float64, origin, step [3]float64, name func(k int) string) {
	for k := 0; k < n; k++ {
		px := make([]uint16, rows*cols)
		for r := 0; r < rows; r++ {
			for c := 0; c < cols; c++ {
				px[r*cols+c] = uint16(int16(k*100 + r*10 + c - 50))
			}
		}
		pos := []string{}
		for a := 0; a < 3; a++ {
			pos = append(pos, fmt.Sprint(origin[a]+float64(k)*step[a]))
		}
		var ori []string
		for _, v := range orient {
			ori = append(ori, fmt.Sprint(v))
		}
		ds := dicom.Dataset{Elements: []*dicom.Element{
			el(t, tag.MediaStorageSOPClassUID, []string{"1.2.840.10008.5.1.4.1.1.2"}),
			el(t, tag.MediaStorageSOPInstanceUID, []string{fmt.Sprintf("1.2.3.%d", k)}),
			el(t, tag.TransferSyntaxUID, []string{uid.ExplicitVRLittleEndian}),
			el(t, tag.SeriesInstanceUID, []string{series}),
			el(t, tag.ImagePositionPatient, pos),
			el(t, tag.ImageOrientationPatient, ori),
			el(t, tag.PixelSpacing, []string{"0.8", "0.6"}),
			el(t, tag.RescaleSlope, []string{"2"}),
			el(t, tag.RescaleIntercept, []string{"-1000"}),
			el(t, tag.Rows, []int{rows}),
			el(t, tag.Columns, []int{cols}),
			el(t, tag.BitsAllocated, []int{16}),
			el(t, tag.BitsStored, []int{16}),
			el(t, tag.PixelRepresentation, []int{1}),
			el(t, tag.SamplesPerPixel, []int{1}),
			el(t, tag.NumberOfFrames, []string{"1"}),
			el(t, tag.PixelData, dicom.PixelDataInfo{Frames: []*frame.Frame{{NativeData: &frame.NativeFrame[uint16]{
				InternalBitsPerSample: 16, InternalRows: rows, InternalCols: cols, InternalSamplesPerPixel: 1, RawData: px,
			}}}}),
		}}
		f, err := os.Create(filepath.Join(dir, name(k)))
		if err != nil {
			t.Fatal(err)
		}
		if err := dicom.Write(f, ds, dicom.SkipVRVerification()); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
}

// An oblique, uncompressed series written in reverse file order comes back sorted by position,
// rescaled, with the affine built from orientation, spacing and positions (LPS → RAS).
func TestDICOMSeriesGeometry(t *testing.T) {
	dir := t.TempDir()
	c, s := math.Cos(0.2), math.Sin(0.2)
	orient := [6]float64{c, s, 0, -s, c, 0} // rows and columns rotated 0.2 rad about z
	origin, step := [3]float64{10, -20, 30}, [3]float64{0, 0, 2.5}
	n := 4
	writeSeries(t, dir, "1.2.3.9", n, 3, 5, orient, origin, step, func(k int) string { return fmt.Sprintf("z%02d.dcm", n-k) })
	img, err := LoadImage(dir, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if img.Shape != [3]int{5, 3, 4} {
		t.Fatalf("shape %v, want columns×rows×slices 5×3×4", img.Shape)
	}
	for k := 0; k < n; k++ {
		for r := 0; r < 3; r++ {
			for cc := 0; cc < 5; cc++ {
				want := float32(2*(k*100+r*10+cc-50) - 1000)
				if got := img.Data[img.Index(cc, 2-r, k)]; got != want { // rows stored bottom-up
					t.Fatalf("voxel (%d,%d,%d) = %g, want %g", cc, r, k, got, want)
				}
			}
		}
	}
	// Columns step 0.6 mm along the row direction; j runs up the 3 rows, so its step is
	// −0.8 mm along the column direction from the last row (origin + 2·0.8·col); slices
	// 2.5 mm; x and y negated for RAS.
	want := Mat4{
		{-c * 0.6, -s * 0.8, 0, -(10 - s*1.6)},
		{-s * 0.6, c * 0.8, 0, -(-20 + c*1.6)},
		{0, 0, 2.5, 30},
		{0, 0, 0, 1},
	}
	for r := 0; r < 4; r++ {
		for cc := 0; cc < 4; cc++ {
			if math.Abs(img.Affine[r][cc]-want[r][cc]) > 1e-9 {
				t.Fatalf("affine %v, want %v", img.Affine, want)
			}
		}
	}
	if axis, sup := img.SliceAxis(); axis != 2 || !sup {
		t.Fatalf("slice axis %d superior %v", axis, sup)
	}
	// A second series in the folder: the reader lists both and asks which.
	writeSeries(t, dir, "1.2.3.10", 2, 3, 5, orient, origin, step, func(k int) string { return fmt.Sprintf("b%d.dcm", k) })
	_, err = LoadImage(dir, DefaultLimits)
	if err == nil || !strings.Contains(err.Error(), "holds 2 series: 1.2.3.10 (2 files), 1.2.3.9 (4 files)") {
		t.Fatalf("two series: %v", err)
	}
	one, err := LoadDICOMSeries(dir, "1.2.3.10", DefaultLimits)
	if err != nil || one.Shape[2] != 2 {
		t.Fatalf("--series: %v", err)
	}
}

// writeSeriesF writes a small series for fuzz seeds.
func writeSeriesF(f *testing.F, dir string) {
	writeSeries(f, dir, "1.2.3", 2, 3, 4, [6]float64{1, 0, 0, 0, 1, 0}, [3]float64{}, [3]float64{0, 0, 1},
		func(k int) string { return fmt.Sprintf("s%d.dcm", k) })
}
