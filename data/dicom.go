package data

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/frame"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/sli2vol/sli2vol/internal/j2k"
)

// DICOM series input (via github.com/suyashkumar/dicom; JPEG 2000 frames via internal/j2k):
// a folder of single-frame image files
// becomes one volume. Slices are ordered by ImagePositionPatient projected on the slice
// normal (never by file name), RescaleSlope/Intercept are applied, and the affine is built
// from ImageOrientationPatient, PixelSpacing and the positions, converted from DICOM's LPS to
// NIfTI's RAS. Array order: i along a row (columns), j up the rows (bottom row first, as
// dcm2niix stores it), k along the sorted slices.

type dicomSlice struct {
	file          string
	series        string
	pos           [3]float64
	orient        [6]float64
	spacing       [2]float64 // row spacing, column spacing (PixelSpacing)
	rows, cols    int
	slope, inter  float64
	pixels        []float32
	projectedPosn float64
}

func elemStrings(ds *dicom.Dataset, t tag.Tag) ([]string, bool) {
	e, err := ds.FindElementByTag(t)
	if err != nil {
		return nil, false
	}
	switch e.Value.ValueType() {
	case dicom.Strings:
		return dicom.MustGetStrings(e.Value), true
	case dicom.Ints:
		var out []string
		for _, v := range dicom.MustGetInts(e.Value) {
			out = append(out, strconv.Itoa(v))
		}
		return out, true
	}
	return nil, false
}

func elemFloats(ds *dicom.Dataset, t tag.Tag, n int) ([]float64, error) {
	s, ok := elemStrings(ds, t)
	if !ok || len(s) < n {
		return nil, fmt.Errorf("missing %s", tag.Tag(t).String())
	}
	out := make([]float64, n)
	for i := 0; i < n; i++ {
		v, err := strconv.ParseFloat(strings.TrimSpace(s[i]), 64)
		if err != nil {
			return nil, fmt.Errorf("%s value %q is not a number", t.String(), s[i])
		}
		out[i] = v
	}
	return out, nil
}

func elemInt(ds *dicom.Dataset, t tag.Tag, def int) int {
	s, ok := elemStrings(ds, t)
	if !ok || len(s) == 0 {
		return def
	}
	v, err := strconv.Atoi(strings.TrimSpace(s[0]))
	if err != nil {
		return def
	}
	return v
}

func readDICOMSlice(path string) (*dicomSlice, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseDICOMSlice(path, b)
}

// parseDICOMSlice decodes one slice from bytes. A panic inside the DICOM or JPEG 2000 decoders
// on malformed input becomes an error.
func parseDICOMSlice(path string, b []byte) (s *dicomSlice, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("malformed DICOM (%v)", r)
		}
	}()
	if err := checkDICOMLengths(b); err != nil {
		return nil, err
	}
	if err := checkDICOMHeader(b); err != nil {
		return nil, err
	}
	ds, err := dicom.Parse(bytes.NewReader(b), int64(len(b)), nil)
	if err != nil {
		return nil, err
	}
	if s, err = sliceGeometry(&ds, path); err != nil {
		return nil, err
	}
	signed := elemInt(&ds, tag.PixelRepresentation, 0) == 1
	pe, err := ds.FindElementByTag(tag.PixelData)
	if err != nil {
		return nil, errors.New("no pixel data")
	}
	info := dicom.MustGetPixelDataInfo(pe.Value)
	if len(info.Frames) != 1 {
		return nil, fmt.Errorf("%d frames: sli2vol reads single-frame slices", len(info.Frames))
	}
	if info.Frames[0].Encapsulated {
		err = decodeJ2KFrame(&ds, s, info.Frames[0], signed)
	} else {
		err = decodeNativeFrame(s, info.Frames[0], signed)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// checkDICOMHeader parses the header alone: the parser allocates pixel buffers from Rows ×
// Columns × frames, so a malformed header must be refused before the pixel data is read.
func checkDICOMHeader(b []byte) error {
	meta, err := dicom.Parse(bytes.NewReader(b), int64(len(b)), nil, dicom.SkipPixelData())
	if err != nil {
		return err
	}
	rows, cols := elemInt(&meta, tag.Rows, 0), elemInt(&meta, tag.Columns, 0)
	frames, bits := elemInt(&meta, tag.NumberOfFrames, 1), elemInt(&meta, tag.BitsAllocated, 16)
	if rows <= 0 || cols <= 0 || frames <= 0 || bits <= 0 || bits > 32 {
		return fmt.Errorf("implausible image header (rows %d, columns %d, frames %d, bits %d)", rows, cols, frames, bits)
	}
	px := int64(rows) * int64(cols) * int64(frames)
	if px > 1<<26 {
		return fmt.Errorf("%d×%d×%d pixels: too large for one slice", cols, rows, frames)
	}
	if ts, ok := elemStrings(&meta, tag.TransferSyntaxUID); !ok || !strings.HasPrefix(ts[0], "1.2.840.10008.1.2.4") {
		if px*int64(bits)/8 > int64(len(b)) {
			return fmt.Errorf("header declares %d pixels, more than the file holds", px)
		}
	}
	return nil
}

// sliceGeometry reads a slice's series, position, orientation, spacing and rescaling.
func sliceGeometry(ds *dicom.Dataset, path string) (*dicomSlice, error) {
	s := &dicomSlice{file: path, slope: 1}
	if uid, ok := elemStrings(ds, tag.SeriesInstanceUID); ok && len(uid) > 0 {
		s.series = strings.TrimSpace(uid[0])
	}
	pos, err := elemFloats(ds, tag.ImagePositionPatient, 3)
	if err != nil {
		return nil, err
	}
	ori, err := elemFloats(ds, tag.ImageOrientationPatient, 6)
	if err != nil {
		return nil, err
	}
	sp, err := elemFloats(ds, tag.PixelSpacing, 2)
	if err != nil {
		return nil, err
	}
	copy(s.pos[:], pos)
	copy(s.orient[:], ori)
	copy(s.spacing[:], sp)
	if v, err := elemFloats(ds, tag.RescaleSlope, 1); err == nil && v[0] != 0 {
		s.slope = v[0]
	}
	if v, err := elemFloats(ds, tag.RescaleIntercept, 1); err == nil {
		s.inter = v[0]
	}
	return s, nil
}

// decodeJ2KFrame decodes an encapsulated frame into s's pixels: JPEG 2000 only.
func decodeJ2KFrame(ds *dicom.Dataset, s *dicomSlice, f *frame.Frame, signed bool) error {
	ts := "unknown"
	if v, ok := elemStrings(ds, tag.TransferSyntaxUID); ok && len(v) > 0 {
		ts = strings.TrimRight(v[0], "\x00 ")
	}
	if ts != "1.2.840.10008.1.2.4.90" && ts != "1.2.840.10008.1.2.4.91" {
		return fmt.Errorf("compressed pixel data (transfer syntax %s): sli2vol reads uncompressed and JPEG 2000 series; convert it first (e.g. gdcmconv --raw)", ts)
	}
	img, err := j2k.Decode(f.EncapsulatedData.Data)
	if err != nil {
		return err
	}
	s.rows, s.cols = img.Height, img.Width
	s.pixels = make([]float32, len(img.Samples))
	for i, v := range img.Samples {
		x := v
		if signed && !img.Signed && img.Precision < 32 && v >= 1<<(img.Precision-1) {
			x = v - 1<<img.Precision // stored unsigned, meant signed (PixelRepresentation 1)
		}
		s.pixels[i] = float32(float64(x)*s.slope + s.inter)
	}
	return nil
}

// decodeNativeFrame converts an uncompressed greyscale frame into s's pixels.
func decodeNativeFrame(s *dicomSlice, f *frame.Frame, signed bool) error {
	nf, err := f.GetNativeFrame()
	if err != nil {
		return err
	}
	if nf.SamplesPerPixel() != 1 {
		return fmt.Errorf("%d samples per pixel: not a greyscale image", nf.SamplesPerPixel())
	}
	s.rows, s.cols = nf.Rows(), nf.Cols()
	s.pixels = make([]float32, s.rows*s.cols)
	conv := func(v float64) float32 { return float32(v*s.slope + s.inter) }
	switch raw := nf.RawDataSlice().(type) {
	case []uint8:
		for i, v := range raw {
			if signed {
				s.pixels[i] = conv(float64(int8(v)))
			} else {
				s.pixels[i] = conv(float64(v))
			}
		}
	case []uint16:
		for i, v := range raw {
			if signed {
				s.pixels[i] = conv(float64(int16(v)))
			} else {
				s.pixels[i] = conv(float64(v))
			}
		}
	case []uint32:
		for i, v := range raw {
			if signed {
				s.pixels[i] = conv(float64(int32(v)))
			} else {
				s.pixels[i] = conv(float64(v))
			}
		}
	default:
		return fmt.Errorf("unsupported pixel layout %T", raw)
	}
	if len(s.pixels) != s.rows*s.cols {
		return fmt.Errorf("pixel data holds %d values for %d×%d", len(s.pixels), s.rows, s.cols)
	}
	return nil
}

// IsDICOMDir reports whether path is a folder (a DICOM series is read from a folder).
func IsDICOMDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// LoadDICOMSeries reads the series uid ("" when the folder holds exactly one) from the files in
// dir (non-DICOM files are skipped).
func LoadDICOMSeries(dir, uid string, lim Limits) (*Image, error) {
	slices, err := readSeries(dir, uid)
	if err == nil {
		err = orderSlices(slices, lim)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	g := seriesGeometry(dir, slices)
	img := &Image{Geometry: g, Data: make([]float32, g.NumVoxels())}
	s0 := slices[0]
	plane := s0.rows * s0.cols
	for k, s := range slices {
		for r := 0; r < s0.rows; r++ {
			j := s0.rows - 1 - r
			copy(img.Data[k*plane+j*s0.cols:k*plane+(j+1)*s0.cols], s.pixels[r*s0.cols:(r+1)*s0.cols])
		}
	}
	return img, nil
}

// readSeries reads the DICOM files in dir and returns the slices of series uid (of the only
// series when uid is "").
func readSeries(dir, uid string) ([]*dicomSlice, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, unwrapPath(err)
	}
	bySeries := map[string][]*dicomSlice{}
	var firstErr error
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		s, err := readDICOMSlice(filepath.Join(dir, e.Name()))
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", e.Name(), err)
			}
			continue
		}
		bySeries[s.series] = append(bySeries[s.series], s)
	}
	if len(bySeries) == 0 {
		if firstErr != nil {
			return nil, fmt.Errorf("no readable DICOM image (first problem: %w)", firstErr)
		}
		return nil, errors.New("no DICOM files")
	}
	if uid == "" && len(bySeries) > 1 {
		var list []string
		for u, s := range bySeries {
			list = append(list, fmt.Sprintf("%s (%d files)", u, len(s)))
		}
		sort.Strings(list)
		return nil, fmt.Errorf("holds %d series: %s; choose one with --series UID", len(bySeries), strings.Join(list, ", "))
	}
	var slices []*dicomSlice
	if uid == "" {
		for _, s := range bySeries {
			slices = s
		}
	} else if slices = bySeries[uid]; slices == nil {
		return nil, fmt.Errorf("no series %s", uid)
	}
	return slices, nil
}

// seriesAxes are the directions of increasing column index (row), increasing row index
// (col) and their normal, from the first slice's ImageOrientationPatient.
func seriesAxes(s0 *dicomSlice) (row, col, normal [3]float64) {
	row = [3]float64{s0.orient[0], s0.orient[1], s0.orient[2]}
	col = [3]float64{s0.orient[3], s0.orient[4], s0.orient[5]}
	normal = [3]float64{row[1]*col[2] - row[2]*col[1], row[2]*col[0] - row[0]*col[2], row[0]*col[1] - row[1]*col[0]}
	return row, col, normal
}

// orderSlices checks that the slices share size, orientation and spacing and sorts them
// along the slice normal, refusing two at one position and a volume over the voxel limit.
func orderSlices(slices []*dicomSlice, lim Limits) error {
	s0 := slices[0]
	for _, s := range slices {
		if s.rows != s0.rows || s.cols != s0.cols || s.orient != s0.orient || s.spacing != s0.spacing {
			return fmt.Errorf("%s does not match the series' size, orientation or spacing", filepath.Base(s.file))
		}
	}
	_, _, normal := seriesAxes(s0)
	for _, s := range slices {
		s.projectedPosn = s.pos[0]*normal[0] + s.pos[1]*normal[1] + s.pos[2]*normal[2]
	}
	sort.Slice(slices, func(a, b int) bool { return slices[a].projectedPosn < slices[b].projectedPosn })
	n := len(slices)
	for i := 1; i < n; i++ {
		if slices[i].projectedPosn-slices[i-1].projectedPosn < 1e-4 {
			return fmt.Errorf("two slices at the same position (%s, %s)", filepath.Base(slices[i-1].file), filepath.Base(slices[i].file))
		}
	}
	if lim.MaxVoxels > 0 && int64(n)*int64(s0.rows*s0.cols) > lim.MaxVoxels {
		return &VoxelLimitError{Dims: [3]int64{int64(s0.cols), int64(s0.rows), int64(n)}, Voxels: int64(n) * int64(s0.rows*s0.cols), Limit: lim.MaxVoxels}
	}
	return nil
}

// seriesGeometry is the volume's geometry from the sorted slices, in NIfTI's RAS.
func seriesGeometry(dir string, slices []*dicomSlice) Geometry {
	s0, n := slices[0], len(slices)
	row, col, normal := seriesAxes(s0)
	// k step: from the first to the last position (handles gantry tilt); spacing along k.
	var step [3]float64
	if n > 1 {
		for a := 0; a < 3; a++ {
			step[a] = (slices[n-1].pos[a] - slices[0].pos[a]) / float64(n-1)
		}
	} else {
		step = normal
	}
	dk := math.Sqrt(step[0]*step[0] + step[1]*step[1] + step[2]*step[2])
	var lps Mat4
	for a := 0; a < 3; a++ {
		lps[a][0] = row[a] * s0.spacing[1]
		lps[a][1] = col[a] * s0.spacing[0]
		lps[a][2] = step[a]
		lps[a][3] = slices[0].pos[a]
	}
	// Rows are stored bottom-up, as dcm2niix writes DICOM to NIfTI (so our volumes and
	// dcm2niix's share array order and affine): j = rows−1−r, its axis negated.
	for a := 0; a < 3; a++ {
		lps[a][3] += float64(s0.rows-1) * lps[a][1]
		lps[a][1] = -lps[a][1]
	}
	g := Geometry{Shape: [3]int{s0.cols, s0.rows, n}, Spacing: [3]float64{s0.spacing[1], s0.spacing[0], dk}, Source: dir}
	for a := 0; a < 3; a++ {
		sign := 1.0
		if a < 2 {
			sign = -1 // LPS → RAS
		}
		for c := 0; c < 4; c++ {
			g.Affine[a][c] = sign * lps[a][c]
		}
	}
	g.Affine[3][3] = 1
	g.Header = syntheticHeader(&g)
	return g
}
