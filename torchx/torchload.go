package torchx

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/big"
	"runtime"
	"strings"
	"unsafe"
)

// Reading torch.save files in Go: the zip container and the pickle inside it. Python's
// torch.save(model.state_dict()) pickles an OrderedDict with a _metadata attribute, which
// libtorch 1.13's pickle_load cannot read; and libtorch's reader can crash on corrupt input.
// This reader understands the opcodes torch.save emits for dicts of tensors (protocols 2–4)
// and nothing else, so unknown or malicious content is an error, never code execution.

type pickleMark struct{}

type pickleGlobal struct{ module, name string }

type pickleDict struct {
	keys []any
	vals []any
}

func (d *pickleDict) set(k, v any) {
	for i, x := range d.keys {
		if x == k {
			d.vals[i] = v
			return
		}
	}
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
}

type pickleList struct{ items []any }

type storageRef struct {
	kind  string // FloatStorage, ...
	key   string
	numel int64
}

type tensorSpec struct {
	storage storageRef
	offset  int64
	size    []int64
	stride  []int64
}

var storageDTypes = map[string]DType{}

func init() {
	for dt, k := range storageKinds {
		storageDTypes[k.name] = dt
	}
}

func ints64(v any) ([]int64, error) {
	t, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("expected a tuple of ints, got %T", v)
	}
	out := make([]int64, len(t))
	for i, x := range t {
		n, ok := x.(int64)
		if !ok {
			return nil, fmt.Errorf("expected an int, got %T", x)
		}
		out[i] = n
	}
	return out, nil
}

// unpickle runs the pickle program in p.
func unpickle(p []byte) (any, error) {
	var stack []any
	memo := map[uint32]any{}
	pos := 0
	need := func(n int) ([]byte, error) {
		if pos+n > len(p) {
			return nil, fmt.Errorf("pickle truncated at byte %d", pos)
		}
		b := p[pos : pos+n]
		pos += n
		return b, nil
	}
	pop := func() (any, error) {
		if len(stack) == 0 {
			return nil, fmt.Errorf("pickle stack underflow at byte %d", pos)
		}
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		return v, nil
	}
	popMark := func() ([]any, error) {
		for i := len(stack) - 1; i >= 0; i-- {
			if _, ok := stack[i].(pickleMark); ok {
				items := append([]any(nil), stack[i+1:]...)
				stack = stack[:i]
				return items, nil
			}
		}
		return nil, fmt.Errorf("pickle MARK missing at byte %d", pos)
	}
	for steps := 0; ; steps++ {
		if steps > 1<<26 {
			return nil, fmt.Errorf("pickle too long")
		}
		ob, err := need(1)
		if err != nil {
			return nil, err
		}
		op := ob[0]
		switch op {
		case 0x80: // PROTO
			if _, err := need(1); err != nil {
				return nil, err
			}
		case 0x95: // FRAME
			if _, err := need(8); err != nil {
				return nil, err
			}
		case '.': // STOP
			return pop()
		case '(':
			stack = append(stack, pickleMark{})
		case '}':
			stack = append(stack, &pickleDict{})
		case ']':
			stack = append(stack, &pickleList{})
		case ')':
			stack = append(stack, []any{})
		case 'N':
			stack = append(stack, nil)
		case 0x88, 0x89:
			stack = append(stack, op == 0x88)
		case 'X', 0x8c: // BINUNICODE, SHORT_BINUNICODE
			var n int
			if op == 'X' {
				b, err := need(4)
				if err != nil {
					return nil, err
				}
				n = int(binary.LittleEndian.Uint32(b))
			} else {
				b, err := need(1)
				if err != nil {
					return nil, err
				}
				n = int(b[0])
			}
			b, err := need(n)
			if err != nil {
				return nil, err
			}
			stack = append(stack, string(b))
		case 'c': // GLOBAL module\nname\n
			end := bytes.IndexByte(p[pos:], '\n')
			if end < 0 {
				return nil, fmt.Errorf("pickle GLOBAL truncated")
			}
			mod := string(p[pos : pos+end])
			pos += end + 1
			end = bytes.IndexByte(p[pos:], '\n')
			if end < 0 {
				return nil, fmt.Errorf("pickle GLOBAL truncated")
			}
			stack = append(stack, pickleGlobal{mod, string(p[pos : pos+end])})
			pos += end + 1
		case 'q', 'r', 0x94: // BINPUT, LONG_BINPUT, MEMOIZE
			if len(stack) == 0 {
				return nil, fmt.Errorf("pickle memo of an empty stack")
			}
			var i uint32
			switch op {
			case 'q':
				b, err := need(1)
				if err != nil {
					return nil, err
				}
				i = uint32(b[0])
			case 'r':
				b, err := need(4)
				if err != nil {
					return nil, err
				}
				i = binary.LittleEndian.Uint32(b)
			default:
				i = uint32(len(memo))
			}
			memo[i] = stack[len(stack)-1]
		case 'h', 'j': // BINGET, LONG_BINGET
			var i uint32
			if op == 'h' {
				b, err := need(1)
				if err != nil {
					return nil, err
				}
				i = uint32(b[0])
			} else {
				b, err := need(4)
				if err != nil {
					return nil, err
				}
				i = binary.LittleEndian.Uint32(b)
			}
			v, ok := memo[i]
			if !ok {
				return nil, fmt.Errorf("pickle memo %d undefined", i)
			}
			stack = append(stack, v)
		case 'K':
			b, err := need(1)
			if err != nil {
				return nil, err
			}
			stack = append(stack, int64(b[0]))
		case 'M':
			b, err := need(2)
			if err != nil {
				return nil, err
			}
			stack = append(stack, int64(binary.LittleEndian.Uint16(b)))
		case 'J':
			b, err := need(4)
			if err != nil {
				return nil, err
			}
			stack = append(stack, int64(int32(binary.LittleEndian.Uint32(b))))
		case 0x8a: // LONG1: n-byte little-endian two's complement
			b, err := need(1)
			if err != nil {
				return nil, err
			}
			raw, err := need(int(b[0]))
			if err != nil {
				return nil, err
			}
			if len(raw) > 8 {
				return nil, fmt.Errorf("pickle integer of %d bytes", len(raw))
			}
			be := make([]byte, len(raw))
			for i := range raw {
				be[len(raw)-1-i] = raw[i]
			}
			v := new(big.Int).SetBytes(be)
			if len(raw) > 0 && raw[len(raw)-1]&0x80 != 0 {
				v.Sub(v, new(big.Int).Lsh(big.NewInt(1), uint(8*len(raw))))
			}
			stack = append(stack, v.Int64())
		case 'G':
			b, err := need(8)
			if err != nil {
				return nil, err
			}
			stack = append(stack, math.Float64frombits(binary.BigEndian.Uint64(b)))
		case 't':
			items, err := popMark()
			if err != nil {
				return nil, err
			}
			stack = append(stack, items)
		case 0x85, 0x86, 0x87:
			n := int(op - 0x84)
			if len(stack) < n {
				return nil, fmt.Errorf("pickle stack underflow at byte %d", pos)
			}
			items := append([]any(nil), stack[len(stack)-n:]...)
			stack = append(stack[:len(stack)-n], items)
		case 'Q': // BINPERSID
			pid, err := pop()
			if err != nil {
				return nil, err
			}
			t, ok := pid.([]any)
			if !ok || len(t) != 5 || t[0] != "storage" {
				return nil, fmt.Errorf("unsupported persistent id %v", pid)
			}
			g, ok1 := t[1].(pickleGlobal)
			key, ok2 := t[2].(string)
			numel, ok3 := t[4].(int64)
			if !ok1 || !ok2 || !ok3 || g.module != "torch" {
				return nil, fmt.Errorf("unsupported storage reference %v", t)
			}
			stack = append(stack, storageRef{kind: g.name, key: key, numel: numel})
		case 'R': // REDUCE
			args, err := pop()
			if err != nil {
				return nil, err
			}
			fn, err := pop()
			if err != nil {
				return nil, err
			}
			v, err := pickleReduce(fn, args)
			if err != nil {
				return nil, err
			}
			stack = append(stack, v)
		case 'b': // BUILD: object state (OrderedDict's _metadata) is not needed
			if _, err := pop(); err != nil {
				return nil, err
			}
		case 's', 'u': // SETITEM, SETITEMS
			var items []any
			if op == 's' {
				v, err := pop()
				if err != nil {
					return nil, err
				}
				k, err := pop()
				if err != nil {
					return nil, err
				}
				items = []any{k, v}
			} else if items, err = popMark(); err != nil {
				return nil, err
			}
			if len(stack) == 0 || len(items)%2 != 0 {
				return nil, fmt.Errorf("pickle SETITEMS without a dict")
			}
			d, ok := stack[len(stack)-1].(*pickleDict)
			if !ok {
				return nil, fmt.Errorf("pickle SETITEMS on a %T", stack[len(stack)-1])
			}
			for i := 0; i < len(items); i += 2 {
				d.set(items[i], items[i+1])
			}
		case 'a', 'e': // APPEND, APPENDS
			var items []any
			if op == 'a' {
				v, err := pop()
				if err != nil {
					return nil, err
				}
				items = []any{v}
			} else if items, err = popMark(); err != nil {
				return nil, err
			}
			if len(stack) == 0 {
				return nil, fmt.Errorf("pickle APPEND without a list")
			}
			l, ok := stack[len(stack)-1].(*pickleList)
			if !ok {
				return nil, fmt.Errorf("pickle APPEND on a %T", stack[len(stack)-1])
			}
			l.items = append(l.items, items...)
		default:
			return nil, fmt.Errorf("unsupported pickle opcode 0x%02x at byte %d", op, pos-1)
		}
	}
}

// pickleReduce applies the few callables torch.save state dicts use.
func pickleReduce(fn, args any) (any, error) {
	g, ok := fn.(pickleGlobal)
	a, ok2 := args.([]any)
	if !ok || !ok2 {
		return nil, fmt.Errorf("unsupported REDUCE of %v", fn)
	}
	switch g.module + "." + g.name {
	case "collections.OrderedDict":
		return &pickleDict{}, nil
	case "torch._utils._rebuild_tensor_v2":
		if len(a) < 4 {
			return nil, fmt.Errorf("_rebuild_tensor_v2 with %d arguments", len(a))
		}
		st, ok := a[0].(storageRef)
		off, ok2 := a[1].(int64)
		if !ok || !ok2 {
			return nil, fmt.Errorf("_rebuild_tensor_v2 arguments %v", a[:2])
		}
		size, err := ints64(a[2])
		if err != nil {
			return nil, err
		}
		stride, err := ints64(a[3])
		if err != nil {
			return nil, err
		}
		if len(size) != len(stride) {
			return nil, fmt.Errorf("tensor size %v and stride %v differ in rank", size, stride)
		}
		return tensorSpec{storage: st, offset: off, size: size, stride: stride}, nil
	case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
		if len(a) == 0 {
			return nil, fmt.Errorf("%s without arguments", g.name)
		}
		return a[0], nil
	}
	return nil, fmt.Errorf("unsupported pickled object %s.%s (not a state dict of tensors)", g.module, g.name)
}

// decodeTorchSave reads a torch.save zip holding a dict of tensors.
func decodeTorchSave(b []byte) (map[string]Tensor, error) {
	z, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, fmt.Errorf("not a torch.save zip archive (truncated or corrupt): %v", err)
	}
	records := map[string]*zip.File{}
	prefix := ""
	for _, f := range z.File {
		records[f.Name] = f
		if strings.HasSuffix(f.Name, "/data.pkl") {
			prefix = strings.TrimSuffix(f.Name, "data.pkl")
		}
	}
	if prefix == "" {
		return nil, fmt.Errorf("no data.pkl record: not a torch.save file")
	}
	read := func(name string, limit int64) ([]byte, error) {
		f, ok := records[prefix+name]
		if !ok {
			return nil, fmt.Errorf("record %s missing", name)
		}
		if int64(f.UncompressedSize64) > limit {
			return nil, fmt.Errorf("record %s is %d bytes, more than its tensor needs (%d)", name, f.UncompressedSize64, limit)
		}
		r, err := f.Open()
		if err != nil {
			return nil, err
		}
		defer r.Close()
		return io.ReadAll(r) // checks the CRC at EOF
	}
	if bo, err := read("byteorder", 16); err == nil && strings.TrimSpace(string(bo)) != "little" {
		return nil, fmt.Errorf("byte order %q: only little-endian files are read", bo)
	}
	pkl, err := read("data.pkl", 1<<28)
	if err != nil {
		return nil, err
	}
	root, err := unpickle(pkl)
	if err != nil {
		return nil, err
	}
	d, ok := root.(*pickleDict)
	if !ok {
		return nil, fmt.Errorf("the file holds a %T, not a dict of tensors", root)
	}
	storages := map[string][]byte{}
	out := make(map[string]Tensor, len(d.keys))
	for i, k := range d.keys {
		name, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("state dict key %v is not a string", k)
		}
		spec, ok := d.vals[i].(tensorSpec)
		if !ok {
			return nil, fmt.Errorf("state dict entry %s is not a tensor (%T)", name, d.vals[i])
		}
		dt, ok := storageDTypes[spec.storage.kind]
		if !ok {
			return nil, fmt.Errorf("entry %s: unsupported storage %s", name, spec.storage.kind)
		}
		es := int64(storageKinds[dt].size)
		data, ok := storages[spec.storage.key]
		if !ok {
			if spec.storage.numel < 0 || spec.storage.numel > 1<<34 {
				return nil, fmt.Errorf("entry %s: storage of %d elements", name, spec.storage.numel)
			}
			if data, err = read("data/"+spec.storage.key, spec.storage.numel*es); err != nil {
				return nil, fmt.Errorf("entry %s: %v", name, err)
			}
			if int64(len(data)) != spec.storage.numel*es {
				return nil, fmt.Errorf("entry %s: storage has %d bytes, want %d", name, len(data), spec.storage.numel*es)
			}
			storages[spec.storage.key] = data
		}
		t, err := gather(data, es, spec)
		if err != nil {
			return nil, fmt.Errorf("entry %s: %v", name, err)
		}
		out[name] = tensorFromBytes(t, int(int64(len(t))/es), dt, spec.size)
	}
	return out, nil
}

// gather copies a (possibly strided) view of a storage into row-major order, checking that
// every element it reads lies inside the storage.
func gather(data []byte, es int64, s tensorSpec) ([]byte, error) {
	n := int64(1)
	for _, d := range s.size {
		if d < 0 {
			return nil, fmt.Errorf("negative size %v", s.size)
		}
		n *= d
		if n > 1<<34 {
			return nil, fmt.Errorf("size %v too large", s.size)
		}
	}
	out := make([]byte, n*es)
	if n == 0 {
		return out, nil
	}
	total := int64(len(data)) / es
	idx := make([]int64, len(s.size))
	for i := int64(0); i < n; i++ {
		src := s.offset
		for d := range idx {
			src += idx[d] * s.stride[d]
		}
		if src < 0 || src >= total {
			return nil, fmt.Errorf("element %d lies outside its storage", i)
		}
		copy(out[i*es:(i+1)*es], data[src*es:(src+1)*es])
		for d := len(idx) - 1; d >= 0; d-- {
			idx[d]++
			if idx[d] < s.size[d] {
				break
			}
			idx[d] = 0
		}
	}
	return out, nil
}

func tensorFromBytes(b []byte, n int, dt DType, shape []int64) Tensor {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	t := fromData(p, n, dt, "", shape)
	runtime.KeepAlive(b)
	return t
}
