package data

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/okieraised/gonii/pkg/nifti"
)

// NIfTI reading and writing. The header layouts and constants are gonii's
// (github.com/okieraised/gonii/pkg/nifti); parsing, validation and voxel decoding are ours,
// because gonii v0.9.0 mishandles cases real files have (each has a test named after it):
//   - scl_slope NaN (what nibabel writes for "no scaling") turns every voxel into NaN;
//   - big-endian files: it notices the byte order from dim[0] but never re-reads the header;
//   - int8 voxels come back unsigned, 3-byte RGB voxels as garbage floats;
//   - it reads and inflates the whole file before looking at the header, with no bound
//     (a gzip bomb or a header claiming 10¹² voxels exhausts memory), and slices the data
//     without checking the file is long enough (a panic on truncated files).

// Header is what sli2vol keeps of a NIfTI-1/2 header: the grid, the voxel encoding, and
// every geometry field, so that an output copies the input's geometry exactly.
type Header struct {
	Version    int
	Dim        [8]int64
	Datatype   int16
	Bitpix     int16
	Pixdim     [8]float64
	VoxOffset  int64
	SclSlope   float64
	SclInter   float64
	XyztUnits  int32
	DimInfo    uint8
	QformCode  int32
	SformCode  int32
	Quatern    [3]float64 // b, c, d
	Qoffset    [3]float64
	Srow       [3][4]float64
	Descrip    string
	ByteOrder  binary.ByteOrder
	compressed bool
}

// datatypes sli2vol reads: size in bytes and a name for messages.
var datatypes = map[int16]struct {
	size int
	name string
}{
	int16(nifti.DT_UINT8): {1, "uint8"}, int16(nifti.DT_INT8): {1, "int8"},
	int16(nifti.DT_INT16): {2, "int16"}, int16(nifti.DT_UINT16): {2, "uint16"},
	int16(nifti.DT_INT32): {4, "int32"}, int16(nifti.DT_UINT32): {4, "uint32"},
	int16(nifti.DT_INT64): {8, "int64"}, int16(nifti.DT_FLOAT32): {4, "float32"},
	int16(nifti.DT_FLOAT64): {8, "float64"},
}

// Limits bound what a reader accepts before it allocates.
type Limits struct {
	MaxVoxels int64 // refuse headers claiming more voxels (0: no limit)
}

// DefaultLimits matches configs' limits.max_voxels default.
var DefaultLimits = Limits{MaxVoxels: 1 << 30}

// Shape3 is the spatial grid (dim[1..3]).
func (h *Header) Shape3() [3]int { return [3]int{int(h.Dim[1]), int(h.Dim[2]), int(h.Dim[3])} }

// NumVoxels is dim[1]·dim[2]·dim[3] (after the 4D check, the whole array).
func (h *Header) NumVoxels() int64 { return h.Dim[1] * h.Dim[2] * h.Dim[3] }

// openMaybeGzip opens path, transparently inflating gzip (by content, not by name).
func openMaybeGzip(path string) (io.Reader, func() error, bool, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return nil, nil, false, errors.New("is a folder, not a NIfTI file")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, false, err
	}
	br := bufio.NewReaderSize(f, 1<<16)
	magic, _ := br.Peek(2)
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, nil, false, fmt.Errorf("not a valid gzip stream: %w", err)
		}
		return gz, func() error { gz.Close(); return f.Close() }, true, nil
	}
	return br, f.Close, false, nil
}

// readHeader decodes the NIfTI-1 (348-byte) or NIfTI-2 (540-byte) header at the start of r.
func readHeader(r io.Reader) (*Header, error) {
	var first [4]byte
	if _, err := io.ReadFull(r, first[:]); err != nil {
		return nil, errors.New("not a NIfTI file: shorter than a header")
	}
	var order binary.ByteOrder
	size := binary.LittleEndian.Uint32(first[:])
	switch {
	case size == 348 || size == 540:
		order = binary.LittleEndian
	case binary.BigEndian.Uint32(first[:]) == 348 || binary.BigEndian.Uint32(first[:]) == 540:
		order, size = binary.BigEndian, binary.BigEndian.Uint32(first[:])
	default:
		return nil, fmt.Errorf("not a NIfTI file: header size field is %d, want 348 or 540", size)
	}
	buf := make([]byte, size)
	copy(buf, first[:])
	if _, err := io.ReadFull(r, buf[4:]); err != nil {
		return nil, errors.New("truncated NIfTI header")
	}
	h := &Header{ByteOrder: order}
	if size == 348 {
		var n nifti.Nii1Header
		if err := binary.Read(bytes.NewReader(buf), order, &n); err != nil {
			return nil, fmt.Errorf("NIfTI-1 header: %w", err)
		}
		if n.Magic != nifti.NIFTI_1_MAGIC_SINGLE {
			if n.Magic == nifti.NIFTI_1_MAGIC_PAIR {
				return nil, errors.New("a .hdr/.img pair header: give sli2vol single-file .nii or .nii.gz")
			}
			return nil, fmt.Errorf("bad NIfTI-1 magic %q (want \"n+1\")", strings.TrimRight(string(n.Magic[:]), "\x00"))
		}
		h.Version = 1
		for i := range n.Dim {
			h.Dim[i] = int64(n.Dim[i])
			h.Pixdim[i] = float64(n.Pixdim[i])
		}
		h.Datatype, h.Bitpix = n.Datatype, n.Bitpix
		h.VoxOffset = int64(n.VoxOffset)
		h.SclSlope, h.SclInter = float64(n.SclSlope), float64(n.SclInter)
		h.XyztUnits, h.DimInfo = int32(n.XyztUnits), n.DimInfo
		h.QformCode, h.SformCode = int32(n.QformCode), int32(n.SformCode)
		h.Quatern = [3]float64{float64(n.QuaternB), float64(n.QuaternC), float64(n.QuaternD)}
		h.Qoffset = [3]float64{float64(n.QoffsetX), float64(n.QoffsetY), float64(n.QoffsetZ)}
		for i := 0; i < 4; i++ {
			h.Srow[0][i], h.Srow[1][i], h.Srow[2][i] = float64(n.SrowX[i]), float64(n.SrowY[i]), float64(n.SrowZ[i])
		}
		h.Descrip = cString(n.Descrip[:])
	} else {
		var n nifti.Nii2Header
		if err := binary.Read(bytes.NewReader(buf), order, &n); err != nil {
			return nil, fmt.Errorf("NIfTI-2 header: %w", err)
		}
		if n.Magic != nifti.NIFTI_2_MAGIC_SINGLE {
			return nil, fmt.Errorf("bad NIfTI-2 magic %q (want \"n+2\")", strings.TrimRight(string(n.Magic[:4]), "\x00"))
		}
		h.Version = 2
		h.Dim, h.Pixdim = n.Dim, n.Pixdim
		h.Datatype, h.Bitpix = n.Datatype, n.Bitpix
		h.VoxOffset = n.VoxOffset
		h.SclSlope, h.SclInter = n.SclSlope, n.SclInter
		h.XyztUnits, h.DimInfo = n.XyztUnits, n.DimInfo
		h.QformCode, h.SformCode = n.QformCode, n.SformCode
		h.Quatern = [3]float64{n.QuaternB, n.QuaternC, n.QuaternD}
		h.Qoffset = [3]float64{n.QoffsetX, n.QoffsetY, n.QoffsetZ}
		h.Srow = [3][4]float64{n.SrowX, n.SrowY, n.SrowZ}
		h.Descrip = cString(n.Descrip[:])
	}
	return h, h.validate()
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func (h *Header) validate() error {
	nd := h.Dim[0]
	switch {
	case nd < 1 || nd > 7:
		return fmt.Errorf("header dim[0] is %d, want 3 (or 4 with one time point)", nd)
	case nd < 3:
		return fmt.Errorf("a %dD image: sli2vol needs a 3D volume", nd)
	}
	for i := int64(1); i <= nd; i++ {
		if h.Dim[i] <= 0 {
			return fmt.Errorf("header dim[%d] is %d: dimensions must be positive", i, h.Dim[i])
		}
	}
	if nd >= 4 {
		extra := int64(1)
		for i := int64(4); i <= nd; i++ {
			extra *= h.Dim[i]
		}
		if extra != 1 {
			return fmt.Errorf("a 4D image with %d volumes: sli2vol needs one 3D volume (extract it first)", extra)
		}
	}
	if nd < 7 {
		for i := nd + 1; i <= 7; i++ {
			h.Dim[i] = 1
		}
	}
	if _, ok := datatypes[h.Datatype]; !ok {
		return fmt.Errorf("unsupported voxel datatype %d (sli2vol reads uint8, int8, int16, uint16, int32, uint32, int64, float32, float64)", h.Datatype)
	}
	for i := 1; i <= 3; i++ {
		if !(h.Pixdim[i] > 0) || math.IsInf(h.Pixdim[i], 0) {
			// NIfTI allows it, but spacing feeds HD95 and resampling: treat as 1 mm.
			h.Pixdim[i] = 1
		}
	}
	if h.VoxOffset < int64(map[int]int{1: 348, 2: 540}[h.Version]) {
		return fmt.Errorf("header vox_offset %d lies inside the header", h.VoxOffset)
	}
	return nil
}

// dataBytes is the size of the voxel array the header describes.
func (h *Header) dataBytes() int64 { return h.NumVoxels() * int64(datatypes[h.Datatype].size) }

// readNIfTI reads the header and the raw voxel bytes of path, refusing oversized volumes
// before allocating and truncated or corrupt files with a message.
func readNIfTI(path string, lim Limits) (*Header, []byte, error) {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("%s: "+format, append([]any{path}, a...)...)
	}
	r, closeFn, gz, err := openMaybeGzip(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, nil, fail("%w", pe.Err)
		}
		return nil, nil, fail("%w", err)
	}
	defer closeFn()
	return readStream(path, r, gz, lim)
}

// readStream reads a (decompressed) NIfTI stream; name labels the errors.
func readStream(path string, r io.Reader, gz bool, lim Limits) (*Header, []byte, error) {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("%s: "+format, append([]any{path}, a...)...)
	}
	h, err := readHeader(r)
	if err != nil {
		return nil, nil, fail("%w", err)
	}
	h.compressed = gz
	if lim.MaxVoxels > 0 && h.NumVoxels() > lim.MaxVoxels {
		return nil, nil, fail("header claims %w", &VoxelLimitError{Dims: [3]int64{h.Dim[1], h.Dim[2], h.Dim[3]}, Voxels: h.NumVoxels(), Limit: lim.MaxVoxels})
	}
	hdrSize := int64(348)
	if h.Version == 2 {
		hdrSize = 540
	}
	// Extensions (if any) between the header and vox_offset are skipped.
	if _, err := io.CopyN(io.Discard, r, h.VoxOffset-hdrSize); err != nil {
		return nil, nil, fail("file ends before vox_offset %d", h.VoxOffset)
	}
	n := h.dataBytes()
	raw := make([]byte, n)
	got, err := io.ReadFull(r, raw)
	if err != nil {
		if gz && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return nil, nil, fail("corrupt gzip data after %d of %d voxel bytes: %w", got, n, err)
		}
		return nil, nil, fail("truncated: header dims %d×%d×%d of %s need %d bytes of voxel data, the file has %d",
			h.Dim[1], h.Dim[2], h.Dim[3], datatypes[h.Datatype].name, n, got)
	}
	if gz {
		// Read to the end so that the gzip checksum is verified and trailing garbage is noticed.
		if _, err := io.Copy(io.Discard, io.LimitReader(r, 1<<26)); err != nil {
			return nil, nil, fail("corrupt gzip stream: %w", err)
		}
	}
	return h, raw, nil
}

// decode converts raw voxels to float64 values (before scaling), in file order.
func decode(h *Header, raw []byte, out func(i int, v float64)) {
	o := h.ByteOrder
	n := int(h.NumVoxels())
	switch int32(h.Datatype) {
	case nifti.DT_UINT8:
		for i := 0; i < n; i++ {
			out(i, float64(raw[i]))
		}
	case nifti.DT_INT8:
		for i := 0; i < n; i++ {
			out(i, float64(int8(raw[i])))
		}
	case nifti.DT_INT16:
		for i := 0; i < n; i++ {
			out(i, float64(int16(o.Uint16(raw[2*i:]))))
		}
	case nifti.DT_UINT16:
		for i := 0; i < n; i++ {
			out(i, float64(o.Uint16(raw[2*i:])))
		}
	case nifti.DT_INT32:
		for i := 0; i < n; i++ {
			out(i, float64(int32(o.Uint32(raw[4*i:]))))
		}
	case nifti.DT_UINT32:
		for i := 0; i < n; i++ {
			out(i, float64(o.Uint32(raw[4*i:])))
		}
	case nifti.DT_INT64:
		for i := 0; i < n; i++ {
			out(i, float64(int64(o.Uint64(raw[8*i:]))))
		}
	case nifti.DT_FLOAT32:
		for i := 0; i < n; i++ {
			out(i, float64(math.Float32frombits(o.Uint32(raw[4*i:]))))
		}
	case nifti.DT_FLOAT64:
		for i := 0; i < n; i++ {
			out(i, math.Float64frombits(o.Uint64(raw[8*i:])))
		}
	}
}

// scaling returns the slope and intercept to apply. NIfTI: slope 0 means none; nibabel writes
// NaN for "none" as well.
func (h *Header) scaling() (float64, float64, bool) {
	s := h.SclSlope
	if s == 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		return 1, 0, false
	}
	inter := h.SclInter
	if math.IsNaN(inter) || math.IsInf(inter, 0) {
		inter = 0
	}
	return s, inter, true
}
