package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/okieraised/gonii/pkg/nifti"
)

// craft writes a NIfTI-1 file by hand (independently of WriteLabels), for reader tests.
type craft struct {
	dims       [8]int16
	datatype   int32
	order      binary.ByteOrder
	values     []float64
	slope      float32
	inter      float32
	qform      int16
	sform      int16
	quatern    [3]float32
	qoffset    [3]float32
	srow       [3][4]float32
	pixdim     [8]float32
	gz         bool
	magic      [4]byte
	truncateBy int
	trailing   []byte
}

func (c craft) write(t *testing.T, name string) string {
	t.Helper()
	if c.order == nil {
		c.order = binary.LittleEndian
	}
	if c.dims[0] == 0 {
		c.dims = [8]int16{3, int16(len(c.values)), 1, 1, 1, 1, 1, 1}
	}
	if c.pixdim[1] == 0 {
		c.pixdim = [8]float32{1, 1, 1, 1, 1, 1, 1, 1}
	}
	if c.magic == [4]byte{} {
		c.magic = nifti.NIFTI_1_MAGIC_SINGLE
	}
	size := datatypes[int16(c.datatype)].size
	if size == 0 {
		size = 8
	}
	h := nifti.Nii1Header{SizeofHdr: 348, Dim: c.dims, Datatype: int16(c.datatype), Bitpix: int16(8 * size),
		Pixdim: c.pixdim, VoxOffset: 352, SclSlope: c.slope, SclInter: c.inter, QformCode: c.qform, SformCode: c.sform,
		QuaternB: c.quatern[0], QuaternC: c.quatern[1], QuaternD: c.quatern[2],
		QoffsetX: c.qoffset[0], QoffsetY: c.qoffset[1], QoffsetZ: c.qoffset[2],
		SrowX: c.srow[0], SrowY: c.srow[1], SrowZ: c.srow[2], Magic: c.magic}
	var b bytes.Buffer
	binary.Write(&b, c.order, &h)
	b.Write([]byte{0, 0, 0, 0})
	for _, v := range c.values {
		switch c.datatype {
		case nifti.DT_UINT8:
			b.WriteByte(uint8(v))
		case nifti.DT_INT8:
			b.WriteByte(byte(int8(v)))
		case nifti.DT_INT16:
			binary.Write(&b, c.order, int16(v))
		case nifti.DT_UINT16:
			binary.Write(&b, c.order, uint16(v))
		case nifti.DT_INT32:
			binary.Write(&b, c.order, int32(v))
		case nifti.DT_FLOAT32:
			binary.Write(&b, c.order, float32(v))
		case nifti.DT_FLOAT64:
			binary.Write(&b, c.order, v)
		case nifti.DT_INT64:
			binary.Write(&b, c.order, int64(v))
		default:
			binary.Write(&b, c.order, v)
		}
	}
	body := b.Bytes()[:b.Len()-c.truncateBy]
	p := filepath.Join(t.TempDir(), name)
	if c.gz {
		var z bytes.Buffer
		w := gzip.NewWriter(&z)
		w.Write(body)
		w.Close()
		body = append(z.Bytes(), c.trailing...)
	}
	if err := os.WriteFile(p, body, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadEveryDatatypeBothByteOrders(t *testing.T) {
	vals := []float64{0, 1, 2, 100, 3, 7, 11, 13}
	for _, dt := range []int32{nifti.DT_UINT8, nifti.DT_INT8, nifti.DT_INT16, nifti.DT_UINT16, nifti.DT_INT32,
		nifti.DT_INT64, nifti.DT_FLOAT32, nifti.DT_FLOAT64} {
		for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
			for _, gz := range []bool{false, true} {
				// Big-endian files: gonii notices the byte order but never re-reads the header.
				c := craft{datatype: dt, order: order, values: vals, gz: gz, slope: 2, inter: -3,
					dims: [8]int16{3, 2, 2, 2, 1, 1, 1, 1}}
				name := "x.nii"
				if gz {
					name += ".gz"
				}
				img, err := LoadImage(c.write(t, name), DefaultLimits)
				if err != nil {
					t.Fatalf("dt %d %v gz %v: %v", dt, order, gz, err)
				}
				for i, v := range vals {
					if want := float32(v*2 - 3); img.Data[i] != want {
						t.Fatalf("dt %d %v: voxel %d = %g, want %g", dt, order, i, img.Data[i], want)
					}
				}
			}
		}
	}
}

// gonii reads int8 voxels as unsigned.
func TestInt8IsSigned(t *testing.T) {
	img, err := LoadImage(craft{datatype: nifti.DT_INT8, values: []float64{-5, 5, -128}}.write(t, "i8.nii"), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if img.Data[0] != -5 || img.Data[2] != -128 {
		t.Fatalf("int8 read as %v", img.Data)
	}
}

// gonii multiplies by scl_slope whenever it is non-zero, so NaN (nibabel's "no scaling")
// turns every voxel into NaN. NIfTI: slope 0 or not finite means unscaled.
func TestNaNSlopeMeansUnscaled(t *testing.T) {
	c := craft{datatype: nifti.DT_INT16, values: []float64{-1000, 40, 12175}, slope: float32(math.NaN()), inter: float32(math.NaN())}
	img, err := LoadImage(c.write(t, "nan.nii"), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if img.Data[0] != -1000 || img.Data[2] != 12175 {
		t.Fatalf("values %v", img.Data)
	}
	c.slope = 0
	c.values = []float64{0, 40, 12175}
	lab, err := LoadLabels(c.write(t, "zero.nii"), DefaultLimits)
	if err != nil || lab.Data[2] != 12175 {
		t.Fatalf("slope 0: %v %v", lab, err)
	}
}

func TestAffineFromSformQformPixdim(t *testing.T) {
	vals := make([]float64, 8)
	dims := [8]int16{3, 2, 2, 2, 1, 1, 1, 1}
	// sform wins when its code is set.
	s := craft{datatype: nifti.DT_UINT8, values: vals, dims: dims, sform: 1, qform: 1,
		srow: [3][4]float32{{-2, 0, 0, 10}, {0, 0, 3, -20}, {0, -1.5, 0, 30}}}
	img, err := LoadImage(s.write(t, "s.nii"), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if img.Affine[0] != [4]float64{-2, 0, 0, 10} || img.Affine[2] != [4]float64{0, -1.5, 0, 30} {
		t.Fatalf("sform affine %v", img.Affine)
	}
	// qform: 90° about z (b=c=0, d=sin 45°) with spacing (2,3,4), qfac −1 flips the k axis:
	// R = [[0,−1,0],[1,0,0],[0,0,1]], columns scaled by (2, 3, −4).
	q := craft{datatype: nifti.DT_UINT8, values: vals, dims: dims, qform: 1,
		quatern: [3]float32{0, 0, float32(math.Sqrt(0.5))}, qoffset: [3]float32{5, 6, 7},
		pixdim: [8]float32{-1, 2, 3, 4, 1, 1, 1, 1}}
	img, err = LoadImage(q.write(t, "q.nii"), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	want := Mat4{{0, -3, 0, 5}, {2, 0, 0, 6}, {0, 0, -4, 7}, {0, 0, 0, 1}}
	for r := range want {
		for c := range want[r] {
			if math.Abs(img.Affine[r][c]-want[r][c]) > 1e-6 {
				t.Fatalf("qform affine %v, want %v", img.Affine, want)
			}
		}
	}
	// Neither: pixdim scaling.
	p := craft{datatype: nifti.DT_UINT8, values: vals, dims: dims, pixdim: [8]float32{1, 0.5, 0.7, 2.5, 1, 1, 1, 1}}
	img, _ = LoadImage(p.write(t, "p.nii"), DefaultLimits)
	if img.Affine[0][0] != 0.5 || img.Affine[2][2] != 2.5 || img.Spacing != [3]float64{0.5, float64(float32(0.7)), 2.5} {
		t.Fatalf("pixdim affine %v spacing %v", img.Affine, img.Spacing)
	}
}

func TestFourDimensional(t *testing.T) {
	ok := craft{datatype: nifti.DT_UINT8, values: make([]float64, 8), dims: [8]int16{4, 2, 2, 2, 1, 1, 1, 1}}
	if _, err := LoadImage(ok.write(t, "t1.nii"), DefaultLimits); err != nil {
		t.Fatalf("4D with one volume refused: %v", err)
	}
	bad := craft{datatype: nifti.DT_UINT8, values: make([]float64, 16), dims: [8]int16{4, 2, 2, 2, 2, 1, 1, 1}}
	_, err := LoadImage(bad.write(t, "t2.nii"), DefaultLimits)
	if err == nil || !strings.Contains(err.Error(), "4D image with 2 volumes") {
		t.Fatalf("4D T=2: %v", err)
	}
}

func TestLabelsRoundTrip(t *testing.T) {
	g := NewGeometry([3]int{3, 2, 2}, [3]float64{0.8, 0.9, 2.5}, [3]float64{-10, 20, 30})
	ids := []int32{0, 12175, 3, 0, 255, 256, 1, 0, 0, 2, 0, 0}
	for _, name := range []string{"l.nii", "l.nii.gz"} {
		p := filepath.Join(t.TempDir(), name)
		if err := WriteLabels(p, ids, &g, WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		back, err := LoadLabels(p, DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		for i := range ids {
			if back.Data[i] != ids[i] {
				t.Fatalf("id %d came back as %d", ids[i], back.Data[i])
			}
		}
		if err := back.SameGrid(&g, 1e-6); err != nil {
			t.Fatal(err)
		}
		if int32(back.Header.Datatype) != nifti.DT_INT16 {
			t.Errorf("ids up to 12175 stored as datatype %d, want int16", back.Header.Datatype)
		}
		// Writing again for the loaded file copies its header geometry verbatim.
		p2 := filepath.Join(t.TempDir(), "again.nii")
		if err := WriteLabels(p2, back.Data, &back.Geometry, WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		again, _ := LoadLabels(p2, DefaultLimits)
		if again.Header.SformCode != back.Header.SformCode || again.Header.QformCode != back.Header.QformCode ||
			again.Header.Qoffset != back.Header.Qoffset || again.Affine != back.Affine {
			t.Fatalf("header geometry changed: %+v vs %+v", again.Header, back.Header)
		}
	}
	small := make([]int32, 12)
	small[3] = 7
	p := filepath.Join(t.TempDir(), "u8.nii")
	WriteLabels(p, small, &g, WriteOptions{})
	if l, _ := LoadLabels(p, DefaultLimits); int32(l.Header.Datatype) != nifti.DT_UINT8 {
		t.Errorf("small ids stored as %d, want uint8", l.Header.Datatype)
	}
}

func TestFloatLabels(t *testing.T) {
	ok := craft{datatype: nifti.DT_FLOAT32, values: []float64{0, 1, 2, 4}}
	if l, err := LoadLabels(ok.write(t, "f.nii"), DefaultLimits); err != nil || l.Data[3] != 4 {
		t.Fatalf("float labels: %v %v", l, err)
	}
	bad := craft{datatype: nifti.DT_FLOAT32, values: []float64{0, 0.5}}
	if _, err := LoadLabels(bad.write(t, "b.nii"), DefaultLimits); err == nil || !strings.Contains(err.Error(), "not an integer") {
		t.Fatalf("fractional label: %v", err)
	}
}

func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	good := craft{datatype: nifti.DT_INT16, values: make([]float64, 8), dims: [8]int16{3, 2, 2, 2, 1, 1, 1, 1}}
	notNifti := filepath.Join(dir, "notes.nii")
	os.WriteFile(notNifti, []byte("hello, this is a text file and certainly not a NIfTI header at all"), 0o644)
	empty := filepath.Join(dir, "empty.nii")
	os.WriteFile(empty, nil, 0o644)
	gzPath := good.write(t, "g.nii.gz")
	gz := func() string { c := good; c.gz = true; return c.write(t, "g.nii.gz") }()
	_ = gzPath
	full, _ := os.ReadFile(gz)
	truncGz := filepath.Join(dir, "trunc.nii.gz")
	os.WriteFile(truncGz, full[:len(full)/2], 0o644)
	cases := []struct {
		name, path, want string
		lim              Limits
	}{
		{"missing", filepath.Join(dir, "nope.nii"), "no such file", DefaultLimits},
		{"text", notNifti, "not a NIfTI file", DefaultLimits},
		{"empty", empty, "not a NIfTI file", DefaultLimits},
		{"bad magic", func() string { c := good; c.magic = [4]byte{'x', 'y', 'z', 0}; return c.write(t, "m.nii") }(), "bad NIfTI-1 magic", DefaultLimits},
		{"pair header", func() string { c := good; c.magic = nifti.NIFTI_1_MAGIC_PAIR; return c.write(t, "p.nii") }(), ".hdr/.img pair", DefaultLimits},
		{"dims larger than data", func() string { c := good; c.truncateBy = 4; return c.write(t, "d.nii") }(), "truncated: header dims 2×2×2 of int16 need 16 bytes", DefaultLimits},
		{"truncated gz", truncGz, "", DefaultLimits},
		{"gz trailing garbage", func() string { c := good; c.gz = true; c.trailing = []byte("garbage!"); return c.write(t, "t.nii.gz") }(), "corrupt gzip", DefaultLimits},
		{"2D", func() string { c := good; c.dims = [8]int16{2, 4, 2, 1, 1, 1, 1, 1}; return c.write(t, "2d.nii") }(), "2D image", DefaultLimits},
		{"zero dim", func() string { c := good; c.dims = [8]int16{3, 4, 0, 2, 1, 1, 1, 1}; return c.write(t, "z.nii") }(), "dim[2] is 0", DefaultLimits},
		{"negative dim", func() string { c := good; c.dims = [8]int16{3, -4, 2, 1, 1, 1, 1, 1}; return c.write(t, "n.nii") }(), "dim[1] is -4", DefaultLimits},
		{"complex datatype", func() string { c := good; c.datatype = 32; return c.write(t, "c.nii") }(), "unsupported voxel datatype 32", DefaultLimits},
		{"too many voxels", good.write(t, "big.nii"), "over the limit of 7", Limits{MaxVoxels: 7}},
		{"nan voxels", craft{datatype: nifti.DT_FLOAT32, values: []float64{1, math.NaN()}}.write(t, "nanv.nii"), "NaN or infinite voxels", DefaultLimits},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadImage(c.path, c.lim)
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, c.path+": ") || !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
				t.Fatalf("error %q: want one line starting with the path and containing %q", msg, c.want)
			}
		})
	}
	// A 10¹²-voxel header is refused before allocating anything.
	huge := craft{datatype: nifti.DT_FLOAT32, values: []float64{1}, dims: [8]int16{3, 32767, 32767, 1000, 1, 1, 1, 1}}
	if _, err := LoadImage(huge.write(t, "huge.nii"), DefaultLimits); err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Fatalf("huge header: %v", err)
	}
}

func TestWriteRefusals(t *testing.T) {
	src := craft{datatype: nifti.DT_UINT8, values: make([]float64, 8), dims: [8]int16{3, 2, 2, 2, 1, 1, 1, 1}}.write(t, "in.nii")
	l, err := LoadLabels(src, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(src)
	if err := WriteLabels(src, l.Data, &l.Geometry, WriteOptions{Overwrite: true}); err == nil || !strings.Contains(err.Error(), "an input file") {
		t.Fatalf("writing over the input: %v", err)
	}
	after, _ := os.ReadFile(src)
	if !bytes.Equal(before, after) {
		t.Fatal("input changed")
	}
	missing := filepath.Join(t.TempDir(), "no", "out.nii")
	if err := WriteLabels(missing, l.Data, &l.Geometry, WriteOptions{}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing folder: %v", err)
	}
	out := filepath.Join(t.TempDir(), "out.nii")
	if err := WriteLabels(out, l.Data, &l.Geometry, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := WriteLabels(out, l.Data, &l.Geometry, WriteOptions{}); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("existing output: %v", err)
	}
	if err := WriteLabels(out, l.Data, &l.Geometry, WriteOptions{Overwrite: true}); err != nil {
		t.Fatalf("--force: %v", err)
	}
}
