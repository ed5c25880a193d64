package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/okieraised/gonii/pkg/nifti"

	"github.com/sli2vol/sli2vol/internal/atomicfile"
)

// Geometry places a voxel grid in patient space. Arrays are in NIfTI order: index
// i + nx·(j + ny·k) for voxel (i, j, k).
type Geometry struct {
	Shape   [3]int
	Spacing [3]float64
	Affine  Mat4    // voxel (i, j, k, 1) → RAS+ millimetres (NIfTI's sform, else qform)
	Header  *Header // the source header, whose geometry outputs copy verbatim
	Source  string  // the file it came from ("" for synthetic volumes)
}

// Mat4 is a 4×4 affine matrix, row-major.
type Mat4 [4][4]float64

// NumVoxels is nx·ny·nz.
func (g *Geometry) NumVoxels() int { return g.Shape[0] * g.Shape[1] * g.Shape[2] }

// Index is the array index of voxel (i, j, k).
func (g *Geometry) Index(i, j, k int) int { return i + g.Shape[0]*(j+g.Shape[1]*k) }

// SameGrid reports whether two geometries describe the same voxels in space (shape equal,
// affines equal to tol millimetres).
func (g *Geometry) SameGrid(o *Geometry, tol float64) error {
	if g.Shape != o.Shape {
		return fmt.Errorf("grid %v does not match %v", g.Shape, o.Shape)
	}
	for r := 0; r < 3; r++ {
		for c := 0; c < 4; c++ {
			if math.Abs(g.Affine[r][c]-o.Affine[r][c]) > tol {
				return fmt.Errorf("affine differs (row %d: %v vs %v)", r, g.Affine[r], o.Affine[r])
			}
		}
	}
	return nil
}

// affine computes the voxel-to-world matrix as the NIfTI standard (and nibabel) do: the
// sform when sform_code > 0, else the qform when qform_code > 0, else pixdim scaling.
func (h *Header) affine() Mat4 {
	var a Mat4
	a[3][3] = 1
	switch {
	case h.SformCode > 0:
		for r := 0; r < 3; r++ {
			a[r] = h.Srow[r]
		}
	case h.QformCode > 0:
		b, c, d := h.Quatern[0], h.Quatern[1], h.Quatern[2]
		aa := 1 - (b*b + c*c + d*d)
		if aa < 1e-7 { // a = 0: a 180° rotation; normalise (b, c, d)
			n := math.Sqrt(b*b + c*c + d*d)
			b, c, d, aa = b/n, c/n, d/n, 0
		}
		q := math.Sqrt(aa)
		rot := [3][3]float64{
			{q*q + b*b - c*c - d*d, 2 * (b*c - q*d), 2 * (b*d + q*c)},
			{2 * (b*c + q*d), q*q + c*c - b*b - d*d, 2 * (c*d - q*b)},
			{2 * (b*d - q*c), 2 * (c*d + q*b), q*q + d*d - c*c - b*b},
		}
		qfac := 1.0
		if h.Pixdim[0] < 0 {
			qfac = -1
		}
		sc := [3]float64{h.Pixdim[1], h.Pixdim[2], qfac * h.Pixdim[3]}
		for r := 0; r < 3; r++ {
			for col := 0; col < 3; col++ {
				a[r][col] = rot[r][col] * sc[col]
			}
			a[r][3] = h.Qoffset[r]
		}
	default:
		for r := 0; r < 3; r++ {
			a[r][r] = h.Pixdim[r+1]
		}
	}
	return a
}

func (h *Header) geometry(source string) Geometry {
	return Geometry{
		Shape:   h.Shape3(),
		Spacing: [3]float64{h.Pixdim[1], h.Pixdim[2], h.Pixdim[3]},
		Affine:  h.affine(),
		Header:  h,
		Source:  source,
	}
}

// Image is an intensity volume (scl_slope/scl_inter applied).
type Image struct {
	Geometry
	Data []float32
}

// Labels is an integer label volume; values are ids, kept as they are.
type Labels struct {
	Geometry
	Data []int32
}

// LoadImage reads a NIfTI image as float32 intensities. NaN or infinite voxels are refused:
// the windowing and the network cannot use them (mask them to a value first).
//
// A folder is read as a DICOM series (LoadDICOMSeries), when it holds a single series.
func LoadImage(path string, lim Limits) (*Image, error) {
	if IsDICOMDir(path) {
		return LoadDICOMSeries(path, "", lim)
	}
	h, raw, err := readNIfTI(path, lim)
	if err != nil {
		return nil, err
	}
	return imageFrom(h, raw, path)
}

// imageFrom decodes an image's raw voxels (scaled; NaN and infinities refused).
func imageFrom(h *Header, raw []byte, path string) (*Image, error) {
	slope, inter, _ := h.scaling()
	img := &Image{Geometry: h.geometry(path), Data: make([]float32, h.NumVoxels())}
	bad := 0
	decode(h, raw, func(i int, v float64) {
		v = v*slope + inter
		if math.IsNaN(v) || math.IsInf(v, 0) {
			bad++
		}
		img.Data[i] = float32(v)
	})
	if bad > 0 {
		return nil, fmt.Errorf("%s: %d NaN or infinite voxels; replace them (e.g. by the background value) first", path, bad)
	}
	return img, nil
}

// LoadLabels reads a NIfTI label volume. Float files must hold integral, non-negative ids.
func LoadLabels(path string, lim Limits) (*Labels, error) {
	h, raw, err := readNIfTI(path, lim)
	if err != nil {
		return nil, err
	}
	return labelsFrom(h, raw, path)
}

// labelsFrom decodes a label volume's raw voxels (integral, non-negative ids).
func labelsFrom(h *Header, raw []byte, path string) (*Labels, error) {
	slope, inter, scaled := h.scaling()
	l := &Labels{Geometry: h.geometry(path), Data: make([]int32, h.NumVoxels())}
	if !scaled && h.Datatype == int16(nifti.DT_UINT8) {
		// What masks are mostly written as: every byte is a valid id, no checks to make.
		for i := range l.Data {
			l.Data[i] = int32(raw[i])
		}
		return l, nil
	}
	var problem string
	decode(h, raw, func(i int, v float64) {
		v = v*slope + inter
		r := math.Round(v)
		if problem == "" {
			switch {
			case math.IsNaN(v) || math.Abs(v-r) > 1e-3:
				problem = fmt.Sprintf("value %g at voxel %d is not an integer label id", v, i)
			case r < 0 || r > math.MaxInt32:
				problem = fmt.Sprintf("label id %g at voxel %d is outside 0..%d", r, i, math.MaxInt32)
			}
		}
		l.Data[i] = int32(r)
	})
	if problem != "" {
		return nil, fmt.Errorf("%s: %s", path, problem)
	}
	return l, nil
}

// WriteOptions control how an output file is written.
type WriteOptions struct {
	Overwrite bool     // replace an existing file (never an input)
	Inputs    []string // further input files the output must not be (besides the geometry's source)
}

// SameFile reports whether two paths name one file (same path, or the same file through links).
func SameFile(a, b string) bool {
	aa, _ := filepath.Abs(a)
	bb, _ := filepath.Abs(b)
	if aa == bb {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// CheckOutput refuses an output path that is the geometry's source, lies in a missing folder,
// or exists (unless o.Overwrite).
func CheckOutput(path string, g *Geometry, o WriteOptions) error {
	for _, in := range append([]string{g.Source}, o.Inputs...) {
		if in != "" && SameFile(path, in) {
			return fmt.Errorf("%s: output is an input file; refusing to overwrite it", path)
		}
	}
	if dir := filepath.Dir(path); dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return fmt.Errorf("%s: output folder %s does not exist", path, dir)
		}
	}
	if !o.Overwrite {
		if _, err := os.Stat(path); err == nil {
			return fmt.Errorf("%s: exists; not overwriting it (use --force)", path)
		}
	}
	return nil
}

// WriteLabels writes ids on g's grid with g's header geometry (affine, qform/sform and
// codes, spacing, units), as the smallest integer type that holds them.
func WriteLabels(path string, data []int32, g *Geometry, o WriteOptions) error {
	dt, body, err := labelEncoding(data, g)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return writeNIfTI(path, g, dt, o, body)
}

// labelEncoding picks the smallest integer datatype holding the ids and returns it with the
// function writing the voxels.
func labelEncoding(data []int32, g *Geometry) (int32, func(io.Writer) error, error) {
	if len(data) != g.NumVoxels() {
		return 0, nil, fmt.Errorf("%d labels for a %v grid", len(data), g.Shape)
	}
	var maxID int32
	for _, v := range data {
		if v < 0 {
			return 0, nil, fmt.Errorf("negative label id %d", v)
		}
		maxID = max(maxID, v)
	}
	dt := nifti.DT_UINT8
	switch {
	case maxID > math.MaxInt16:
		dt = nifti.DT_INT32
	case maxID > math.MaxUint8:
		dt = nifti.DT_INT16
	}
	return dt, func(w io.Writer) error {
		switch dt {
		case nifti.DT_UINT8:
			b := make([]byte, len(data))
			for i, v := range data {
				b[i] = byte(v)
			}
			_, err := w.Write(b)
			return err
		case nifti.DT_INT16:
			b := make([]int16, len(data))
			for i, v := range data {
				b[i] = int16(v)
			}
			return binary.Write(w, binary.LittleEndian, b)
		default:
			return binary.Write(w, binary.LittleEndian, data)
		}
	}, nil
}

// WriteImageInt16 writes intensities rounded to int16 (CT in HU) on g's grid.
func WriteImageInt16(path string, data []float32, g *Geometry, o WriteOptions) error {
	if len(data) != g.NumVoxels() {
		return fmt.Errorf("%s: %d voxels for a %v grid", path, len(data), g.Shape)
	}
	return writeNIfTI(path, g, nifti.DT_INT16, o, func(w io.Writer) error {
		b := make([]int16, len(data))
		for i, v := range data {
			b[i] = int16(math.Max(math.MinInt16, math.Min(math.MaxInt16, math.Round(float64(v)))))
		}
		return binary.Write(w, binary.LittleEndian, b)
	})
}

// writeNIfTI writes a single-file NIfTI (-1, or -2 when a dim exceeds int16), gzipped when
// the name ends in .gz, atomically.
func writeNIfTI(path string, g *Geometry, datatype int32, o WriteOptions, body func(io.Writer) error) error {
	if err := CheckOutput(path, g, o); err != nil {
		return err
	}
	return atomicfile.Write(path, func(f *os.File) error {
		if !strings.HasSuffix(strings.ToLower(path), ".gz") {
			return encodeNIfTI(f, g, datatype, body)
		}
		gz := gzip.NewWriter(f)
		if err := encodeNIfTI(gz, g, datatype, body); err != nil {
			return err
		}
		return gz.Close()
	})
}

// encodeNIfTI writes the header (g's geometry, copied from its source header) and the voxels.
func encodeNIfTI(w io.Writer, g *Geometry, datatype int32, body func(io.Writer) error) error {
	if _, err := w.Write(headerBytes(g, datatype)); err != nil {
		return err
	}
	return body(w)
}

// headerBytes is a single-file NIfTI-1 header (NIfTI-2 when a dim exceeds int16) for g's grid
// and geometry, followed by the empty extension flag.
func headerBytes(g *Geometry, datatype int32) []byte {
	src := g.Header
	if src == nil {
		src = syntheticHeader(g)
	}
	var hdr bytes.Buffer
	size := datatypes[int16(datatype)].size
	big := g.Shape[0] > math.MaxInt16 || g.Shape[1] > math.MaxInt16 || g.Shape[2] > math.MaxInt16
	descrip := [80]byte{}
	copy(descrip[:], "sli2vol")
	if !big {
		n := nifti.Nii1Header{
			SizeofHdr: 348, Regular: 'r', DimInfo: src.DimInfo,
			Dim:      [8]int16{3, int16(g.Shape[0]), int16(g.Shape[1]), int16(g.Shape[2]), 1, 1, 1, 1},
			Datatype: int16(datatype), Bitpix: int16(8 * size), VoxOffset: 352,
			XyztUnits: uint8(src.XyztUnits), QformCode: int16(src.QformCode), SformCode: int16(src.SformCode),
			QuaternB: float32(src.Quatern[0]), QuaternC: float32(src.Quatern[1]), QuaternD: float32(src.Quatern[2]),
			QoffsetX: float32(src.Qoffset[0]), QoffsetY: float32(src.Qoffset[1]), QoffsetZ: float32(src.Qoffset[2]),
			Descrip: descrip, Magic: nifti.NIFTI_1_MAGIC_SINGLE,
		}
		for i := 0; i < 8; i++ {
			n.Pixdim[i] = float32(src.Pixdim[i])
		}
		for i := 0; i < 4; i++ {
			n.SrowX[i], n.SrowY[i], n.SrowZ[i] = float32(src.Srow[0][i]), float32(src.Srow[1][i]), float32(src.Srow[2][i])
		}
		binary.Write(&hdr, binary.LittleEndian, &n)
	} else {
		n := nifti.Nii2Header{
			SizeofHdr: 540, Magic: nifti.NIFTI_2_MAGIC_SINGLE, Datatype: int16(datatype), Bitpix: int16(8 * size),
			Dim:    [8]int64{3, int64(g.Shape[0]), int64(g.Shape[1]), int64(g.Shape[2]), 1, 1, 1, 1},
			Pixdim: src.Pixdim, VoxOffset: 544, QformCode: src.QformCode, SformCode: src.SformCode,
			QuaternB: src.Quatern[0], QuaternC: src.Quatern[1], QuaternD: src.Quatern[2],
			QoffsetX: src.Qoffset[0], QoffsetY: src.Qoffset[1], QoffsetZ: src.Qoffset[2],
			SrowX: src.Srow[0], SrowY: src.Srow[1], SrowZ: src.Srow[2], XyztUnits: src.XyztUnits,
			DimInfo: src.DimInfo, Descrip: descrip,
		}
		binary.Write(&hdr, binary.LittleEndian, &n)
	}
	hdr.Write([]byte{0, 0, 0, 0}) // no extensions
	return hdr.Bytes()
}

// syntheticHeader describes a geometry built in memory (phantoms): the affine as sform
// (code 2, aligned) and, when it is a pure scaling plus offset, as qform too.
func syntheticHeader(g *Geometry) *Header {
	h := &Header{Version: 1, SformCode: 2, XyztUnits: 2} // millimetres
	h.Pixdim = [8]float64{1, g.Spacing[0], g.Spacing[1], g.Spacing[2], 1, 1, 1, 1}
	for r := 0; r < 3; r++ {
		h.Srow[r] = g.Affine[r]
	}
	diag := true
	for r := 0; r < 3; r++ {
		for c := 0; c < 3; c++ {
			if r != c && g.Affine[r][c] != 0 || r == c && g.Affine[r][c] <= 0 {
				diag = false
			}
		}
	}
	if diag {
		h.QformCode = 2
		h.Qoffset = [3]float64{g.Affine[0][3], g.Affine[1][3], g.Affine[2][3]}
	}
	return h
}

// NewGeometry is a synthetic grid with the given spacing and origin, axes aligned with RAS.
func NewGeometry(shape [3]int, spacing [3]float64, origin [3]float64) Geometry {
	g := Geometry{Shape: shape, Spacing: spacing}
	for r := 0; r < 3; r++ {
		g.Affine[r][r] = spacing[r]
		g.Affine[r][3] = origin[r]
	}
	g.Affine[3][3] = 1
	g.Header = syntheticHeader(&g)
	return g
}

// ReadGeometry reads a volume's grid without its voxels: the NIfTI header alone (a DICOM
// folder, series series, is read whole). Training from thousands of cases starts from this.
func ReadGeometry(path, series string, lim Limits) (Geometry, error) {
	if IsDICOMDir(path) {
		img, err := Case{Image: path, Series: series}.LoadImage(lim)
		if err != nil {
			return Geometry{}, err
		}
		return img.Geometry, nil
	}
	r, closeFn, _, err := openMaybeGzip(path)
	if err != nil {
		return Geometry{}, fmt.Errorf("%s: %w", path, unwrapPath(err))
	}
	defer closeFn()
	h, err := readHeader(r)
	if err != nil {
		return Geometry{}, fmt.Errorf("%s: %w", path, err)
	}
	if lim.MaxVoxels > 0 && h.NumVoxels() > lim.MaxVoxels {
		return Geometry{}, fmt.Errorf("%s: header claims %d voxels, over the limit of %d (limits.max_voxels)", path, h.NumVoxels(), lim.MaxVoxels)
	}
	return h.geometry(path), nil
}
