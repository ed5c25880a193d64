package torchx

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"unsafe"

	"github.com/sli2vol/sli2vol/internal/torchload"
)

// The writer below produces exactly what Python's torch.save writes for a dict of tensors:
// a zip of archive/data.pkl (pickle protocol 2 rebuilding each tensor with
// torch._utils._rebuild_tensor_v2 from a persistent storage id) and one archive/data/N record
// per tensor. libtorch's own pickle_save tags the dict with torch.jit._pickle.restore_type_tag,
// which torch.load refuses by default since PyTorch 2.6 (weights_only=True); this format loads
// under weights_only in every PyTorch from 1.13 on. Reading (in Go as well) is
// internal/torchload, with torchload.go.

// storageNames are the torch.<Kind>Storage of each dtype a state dict holds (their element
// sizes: torchload.ElemSize).
var storageNames = map[DType]string{
	Uint8: "ByteStorage", Int8: "CharStorage", Int16: "ShortStorage", Int32: "IntStorage",
	Int64: "LongStorage", Float16: "HalfStorage", Float32: "FloatStorage",
	Float64: "DoubleStorage", Bool: "BoolStorage", BFloat16: "BFloat16Storage",
}

// rawBytes copies t's elements (row-major, CPU, its own dtype) into Go memory.
func rawBytes(t Tensor) ([]byte, DType) {
	dt := DTypeOf(t)
	name, ok := storageNames[dt]
	if !ok {
		panic(&Error{Msg: fmt.Sprintf("cannot save a tensor of dtype %d", dt)})
	}
	size, _ := torchload.ElemSize(name)
	b := make([]byte, int(Numel(t))*size)
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	copyOut(t, dt, p, len(b))
	return b, dt
}

// pickler emits the few protocol-2 opcodes a state dict needs.
type pickler struct{ bytes.Buffer }

func (p *pickler) op(b ...byte) { p.Write(b) }

func (p *pickler) global(module, name string) {
	p.WriteByte('c')
	p.WriteString(module + "\n" + name + "\n")
}

func (p *pickler) str(s string) {
	p.WriteByte('X')
	binary.Write(&p.Buffer, binary.LittleEndian, uint32(len(s)))
	p.WriteString(s)
}

func (p *pickler) int(v int64) {
	switch {
	case v >= 0 && v < 256:
		p.op('K', byte(v))
	case v >= -(1<<31) && v < 1<<31:
		p.WriteByte('J')
		binary.Write(&p.Buffer, binary.LittleEndian, int32(v))
	default: // LONG1: 8-byte two's complement little endian
		p.op(0x8a, 8)
		binary.Write(&p.Buffer, binary.LittleEndian, v)
	}
}

func (p *pickler) intTuple(v []int64) {
	if len(v) == 0 {
		p.op(')')
		return
	}
	p.op('(')
	for _, x := range v {
		p.int(x)
	}
	p.op('t')
}

func contiguousStrides(shape []int64) []int64 {
	s := make([]int64, len(shape))
	acc := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = acc
		acc *= shape[i]
	}
	return s
}

// encodeTorchSave writes names[i] → ts[i] as torch.save({...}) would.
func encodeTorchSave(names []string, ts []Tensor) ([]byte, error) {
	var p pickler
	p.op(0x80, 2, '}') // PROTO 2, EMPTY_DICT
	data := make([][]byte, len(ts))
	if len(ts) > 0 {
		p.op('(') // MARK for SETITEMS
	}
	for i, t := range ts {
		b, dt := rawBytes(t)
		data[i] = b
		shape := t.Shape()
		p.str(names[i])
		p.global("torch._utils", "_rebuild_tensor_v2")
		p.op('(')
		// persistent id ('storage', torch.<Kind>Storage, key, location, numel)
		p.op('(')
		p.str("storage")
		p.global("torch", storageNames[dt])
		p.str(fmt.Sprint(i))
		p.str("cpu")
		p.int(numel(shape))
		p.op('t', 'Q')
		p.int(0) // storage offset
		p.intTuple(shape)
		p.intTuple(contiguousStrides(shape))
		p.op(0x89) // requires_grad False
		p.global("collections", "OrderedDict")
		p.op(')', 'R') // backward hooks: OrderedDict()
		p.op('t', 'R')
	}
	if len(ts) > 0 {
		p.op('u') // SETITEMS
	}
	p.op('.')

	var out bytes.Buffer
	cw := &countingWriter{w: &out}
	z := zip.NewWriter(cw)
	records := []struct {
		name string
		body []byte
	}{{"archive/data.pkl", p.Bytes()}, {"archive/byteorder", []byte("little")}}
	for i, b := range data {
		records = append(records, struct {
			name string
			body []byte
		}{fmt.Sprintf("archive/data/%d", i), b})
	}
	records = append(records, struct {
		name string
		body []byte
	}{"archive/version", []byte("3\n")})
	for _, r := range records {
		if err := writeAligned(z, cw, r.name, r.body); err != nil {
			return nil, err
		}
	}
	if err := z.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// writeAligned stores one record uncompressed with its data 64-byte aligned, as PyTorch's
// writer does (so a reader may map tensors straight from the file).
func writeAligned(z *zip.Writer, cw *countingWriter, name string, body []byte) error {
	if err := z.Flush(); err != nil {
		return err
	}
	const localHeader = 30
	start := cw.n + localHeader + int64(len(name)) + 4 // 4: extra field id + size
	pad := int((64 - start%64) % 64)
	extra := make([]byte, 4+pad)
	binary.LittleEndian.PutUint16(extra[0:], 0x4246) // "FB", PyTorch's padding field id
	binary.LittleEndian.PutUint16(extra[2:], uint16(pad))
	for i := 4; i < len(extra); i++ {
		extra[i] = 'Z'
	}
	w, err := z.CreateRaw(&zip.FileHeader{
		Name: name, Method: zip.Store, Extra: extra,
		CRC32: crc32.ChecksumIEEE(body), CompressedSize64: uint64(len(body)), UncompressedSize64: uint64(len(body)),
	})
	if err != nil {
		return err
	}
	_, err = w.Write(body)
	return err
}
