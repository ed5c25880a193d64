package torchload

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"testing"
)

// entry is one tensor of a test file: a view (offset, size, stride) of storage key.
type entry struct {
	name, kind, key      string
	offset               int64
	size, stride         []int64
	parameter, ordered   bool // wrap in _rebuild_parameter; the dict is an OrderedDict
	storageNumelOverride int64
}

// pickler writes the protocol-2 opcodes Python's torch.save emits for a state dict,
// including the memo (BINPUT/BINGET) for repeated storages.
type pickler struct{ bytes.Buffer }

func (p *pickler) op(b ...byte) { p.Write(b) }

func (p *pickler) global(module, name string) { p.WriteString("c" + module + "\n" + name + "\n") }

func (p *pickler) str(s string) {
	if len(s) < 256 {
		p.op(0x8c, byte(len(s)))
	} else {
		p.op('X')
		binary.Write(&p.Buffer, binary.LittleEndian, uint32(len(s)))
	}
	p.WriteString(s)
}

func (p *pickler) int(v int64) {
	switch {
	case v >= 0 && v < 256:
		p.op('K', byte(v))
	case v >= 0 && v < 65536:
		p.op('M')
		binary.Write(&p.Buffer, binary.LittleEndian, uint16(v))
	case v >= -(1<<31) && v < 1<<31:
		p.op('J')
		binary.Write(&p.Buffer, binary.LittleEndian, int32(v))
	default:
		p.op(0x8a, 8)
		binary.Write(&p.Buffer, binary.LittleEndian, v)
	}
}

func (p *pickler) ints(v []int64) {
	switch len(v) {
	case 0:
		p.op(')')
	case 1, 2, 3:
		for _, x := range v {
			p.int(x)
		}
		p.op(byte(0x84 + len(v)))
	default:
		p.op('(')
		for _, x := range v {
			p.int(x)
		}
		p.op('t')
	}
}

// build writes a torch.save zip of entries over storages (key → bytes).
func build(t testing.TB, entries []entry, storages map[string][]byte) []byte {
	var p pickler
	p.op(0x80, 2)
	if len(entries) > 0 && entries[0].ordered {
		p.global("collections", "OrderedDict")
		p.op(')', 'R')
	} else {
		p.op('}')
	}
	p.op('(')
	memo := map[string]byte{}
	for _, e := range entries {
		p.str(e.name)
		if e.parameter {
			p.global("torch._utils", "_rebuild_parameter")
		}
		p.global("torch._utils", "_rebuild_tensor_v2")
		p.op('(')
		if m, ok := memo[e.key]; ok {
			p.op('h', m)
		} else {
			p.op('(')
			p.str("storage")
			p.global("torch", e.kind)
			p.str(e.key)
			p.str("cpu")
			size, _ := ElemSize(e.kind)
			n := int64(len(storages[e.key]) / max(size, 1))
			if e.storageNumelOverride != 0 {
				n = e.storageNumelOverride
			}
			p.int(n)
			p.op('t', 'Q', 'q', byte(len(memo)))
			memo[e.key] = byte(len(memo))
		}
		p.int(e.offset)
		p.ints(e.size)
		p.ints(e.stride)
		p.op(0x89)
		p.global("collections", "OrderedDict")
		p.op(')', 'R', 't', 'R')
		if e.parameter {
			p.op(0x88, 0x86, 'R') // (tensor, requires_grad) TUPLE2 REDUCE
		}
	}
	p.op('u')
	if len(entries) > 0 && entries[0].ordered {
		p.op('}', 'b') // BUILD with _metadata
	}
	p.op('.')
	var out bytes.Buffer
	z := zip.NewWriter(&out)
	add := func(name string, b []byte) {
		w, err := z.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
	}
	add("archive/data.pkl", p.Bytes())
	add("archive/byteorder", []byte("little"))
	for k, b := range storages {
		add("archive/data/"+k, b)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func f32s(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func i64s(v ...int64) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return b
}

// sample: a transposed view, a narrowed view of the same storage (memo), a parameter,
// a 0-d int64 and an empty tensor, in an OrderedDict as model.state_dict() pickles it.
func sample(t testing.TB) []byte {
	return build(t, []entry{
		{name: "w.T", kind: "FloatStorage", key: "0", size: []int64{3, 2}, stride: []int64{1, 3}, ordered: true},
		{name: "w.row1", kind: "FloatStorage", key: "0", offset: 3, size: []int64{3}, stride: []int64{1}},
		{name: "p", kind: "FloatStorage", key: "0", size: []int64{1, 1, 1, 2}, stride: []int64{6, 6, 6, 1}, parameter: true},
		{name: "num_batches_tracked", kind: "LongStorage", key: "1", size: nil, stride: nil},
		{name: "empty", kind: "LongStorage", key: "1", size: []int64{0, 4}, stride: []int64{4, 1}},
	}, map[string][]byte{"0": f32s(1, 2, 3, 4, 5, 6), "1": i64s(70000)})
}

func decodeAll(b []byte) (map[string]Tensor, []string, error) {
	out := map[string]Tensor{}
	var order []string
	err := Decode(b, func(name string, t Tensor) error {
		out[name] = t
		order = append(order, name)
		return nil
	})
	return out, order, err
}

func TestDecode(t *testing.T) {
	got, order, err := decodeAll(sample(t))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(order) != "[w.T w.row1 p num_batches_tracked empty]" {
		t.Fatalf("entries in order %v", order)
	}
	for _, c := range []struct {
		name  string
		shape string
		data  []byte
	}{
		{"w.T", "[3 2]", f32s(1, 4, 2, 5, 3, 6)},
		{"w.row1", "[3]", f32s(4, 5, 6)},
		{"p", "[1 1 1 2]", f32s(1, 2)},
		{"num_batches_tracked", "[]", i64s(70000)},
		{"empty", "[0 4]", []byte{}},
	} {
		e := got[c.name]
		if fmt.Sprint(e.Shape) != c.shape || !bytes.Equal(e.Data, c.data) {
			t.Errorf("%s: shape %v data %v, want %s %v", c.name, e.Shape, e.Data, c.shape, c.data)
		}
	}
	if got["num_batches_tracked"].Storage != "LongStorage" {
		t.Errorf("storage %q", got["num_batches_tracked"].Storage)
	}
	stop := fmt.Errorf("stop")
	n := 0
	if err := Decode(sample(t), func(string, Tensor) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("fn's error: %v after %d calls", err, n)
	}
}

func TestDecodeRefuses(t *testing.T) {
	valid := sample(t)
	for cut := 0; cut < len(valid); cut += max(1, len(valid)/97) {
		if _, _, err := decodeAll(valid[:cut]); err == nil {
			t.Fatalf("a file truncated to %d of %d bytes decoded", cut, len(valid))
		}
	}
	f := map[string][]byte{"0": f32s(1, 2, 3, 4)}
	for _, c := range []struct {
		why, want string
		e         entry
	}{
		{"outside", "outside its storage", entry{kind: "FloatStorage", key: "0", offset: 3, size: []int64{2}, stride: []int64{1}}},
		{"negative stride", "outside its storage", entry{kind: "FloatStorage", key: "0", size: []int64{2}, stride: []int64{-1}}},
		{"negative size", "negative size", entry{kind: "FloatStorage", key: "0", size: []int64{-1}, stride: []int64{1}}},
		{"kind", "unsupported storage", entry{kind: "ComplexFloatStorage", key: "0", size: []int64{1}, stride: []int64{1}}},
		{"numel", "more than its tensor needs", entry{kind: "FloatStorage", key: "0", size: []int64{1}, stride: []int64{1}, storageNumelOverride: 1}},
		{"short", "storage has 16 bytes, want 20", entry{kind: "FloatStorage", key: "0", size: []int64{1}, stride: []int64{1}, storageNumelOverride: 5}},
		{"missing", "record data/9 missing", entry{kind: "FloatStorage", key: "9", size: []int64{1}, stride: []int64{1}}},
	} {
		c.e.name = "x"
		_, _, err := decodeAll(build(t, []entry{c.e}, f))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.why, err, c.want)
		}
	}
	if _, _, err := decodeAll([]byte("PK garbage")); err == nil || !strings.Contains(err.Error(), "not a torch.save zip") {
		t.Errorf("garbage: %v", err)
	}
}

// FuzzDecode: no input makes the reader panic, read outside a storage or return a tensor
// whose data does not fill its shape. Plain go test, no libtorch.
func FuzzDecode(f *testing.F) {
	f.Add(sample(f))
	f.Add(build(f, []entry{{name: "b", kind: "BoolStorage", key: "0", size: []int64{2, 2}, stride: []int64{1, 2}}},
		map[string][]byte{"0": {0, 1, 1, 0}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		Decode(b, func(name string, e Tensor) error {
			size, ok := ElemSize(e.Storage)
			if !ok {
				t.Fatalf("%s: storage %q", name, e.Storage)
			}
			n := int64(size)
			for _, d := range e.Shape {
				n *= d
			}
			if int64(len(e.Data)) != n {
				t.Fatalf("%s: %d bytes for shape %v of %s", name, len(e.Data), e.Shape, e.Storage)
			}
			return nil
		})
	})
}
