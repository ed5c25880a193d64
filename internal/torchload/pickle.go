package torchload

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
)

// The pickle machine: the opcodes torch.save emits for a dict of tensors (protocols 2–4).

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

// unpickler is the state of a pickle program being run.
type unpickler struct {
	p     []byte
	pos   int
	stack []any
	memo  map[uint32]any
}

// unpickle runs the pickle program in p.
func unpickle(p []byte) (any, error) {
	u := &unpickler{p: p, memo: map[uint32]any{}}
	for steps := 0; ; steps++ {
		if steps > 1<<26 {
			return nil, fmt.Errorf("pickle too long")
		}
		ob, err := u.need(1)
		if err != nil {
			return nil, err
		}
		op := ob[0]
		if op == '.' { // STOP
			return u.pop()
		}
		run := opcodes[op]
		if run == nil {
			return nil, fmt.Errorf("unsupported pickle opcode 0x%02x at byte %d", op, u.pos-1)
		}
		if err := run(u, op); err != nil {
			return nil, err
		}
	}
}

// opcodes is the decoding table: what each supported opcode (but STOP) does.
var opcodes = [256]func(u *unpickler, op byte) error{
	0x80: skip(1), // PROTO
	0x95: skip(8), // FRAME
	'(':  push(func() any { return pickleMark{} }),
	'}':  push(func() any { return &pickleDict{} }),
	']':  push(func() any { return &pickleList{} }),
	')':  push(func() any { return []any{} }),
	'N':  push(func() any { return nil }),
	0x88: push(func() any { return true }),  // NEWTRUE
	0x89: push(func() any { return false }), // NEWFALSE
	'X':  (*unpickler).unicode,              // BINUNICODE
	0x8c: (*unpickler).unicode,              // SHORT_BINUNICODE
	'c':  (*unpickler).global,               // GLOBAL module\nname\n
	'q':  (*unpickler).memoPut,              // BINPUT
	'r':  (*unpickler).memoPut,              // LONG_BINPUT
	0x94: (*unpickler).memoPut,              // MEMOIZE
	'h':  (*unpickler).memoGet,              // BINGET
	'j':  (*unpickler).memoGet,              // LONG_BINGET
	'K':  (*unpickler).binint,               // BININT1
	'M':  (*unpickler).binint,               // BININT2
	'J':  (*unpickler).binint,               // BININT
	0x8a: (*unpickler).long1,                // LONG1
	'G':  (*unpickler).binfloat,             // BINFLOAT
	't':  (*unpickler).tuple,                // TUPLE
	0x85: (*unpickler).tupleN,               // TUPLE1
	0x86: (*unpickler).tupleN,               // TUPLE2
	0x87: (*unpickler).tupleN,               // TUPLE3
	'Q':  (*unpickler).persid,               // BINPERSID
	'R':  (*unpickler).reduce,               // REDUCE
	'b':  (*unpickler).build,                // BUILD
	's':  (*unpickler).setitems,             // SETITEM
	'u':  (*unpickler).setitems,             // SETITEMS
	'a':  (*unpickler).appends,              // APPEND
	'e':  (*unpickler).appends,              // APPENDS
}

func skip(n int) func(*unpickler, byte) error {
	return func(u *unpickler, _ byte) error {
		_, err := u.need(n)
		return err
	}
}

func push(v func() any) func(*unpickler, byte) error {
	return func(u *unpickler, _ byte) error {
		u.stack = append(u.stack, v())
		return nil
	}
}

// need consumes the next n bytes of the program.
func (u *unpickler) need(n int) ([]byte, error) {
	if u.pos+n > len(u.p) {
		return nil, fmt.Errorf("pickle truncated at byte %d", u.pos)
	}
	b := u.p[u.pos : u.pos+n]
	u.pos += n
	return b, nil
}

// uint reads an n-byte (1, 2 or 4) little-endian unsigned argument.
func (u *unpickler) uint(n int) (uint32, error) {
	b, err := u.need(n)
	if err != nil {
		return 0, err
	}
	switch n {
	case 1:
		return uint32(b[0]), nil
	case 2:
		return uint32(binary.LittleEndian.Uint16(b)), nil
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (u *unpickler) pop() (any, error) {
	if len(u.stack) == 0 {
		return nil, fmt.Errorf("pickle stack underflow at byte %d", u.pos)
	}
	v := u.stack[len(u.stack)-1]
	u.stack = u.stack[:len(u.stack)-1]
	return v, nil
}

// popMark pops the items above the topmost MARK, and the MARK.
func (u *unpickler) popMark() ([]any, error) {
	for i := len(u.stack) - 1; i >= 0; i-- {
		if _, ok := u.stack[i].(pickleMark); ok {
			items := append([]any(nil), u.stack[i+1:]...)
			u.stack = u.stack[:i]
			return items, nil
		}
	}
	return nil, fmt.Errorf("pickle MARK missing at byte %d", u.pos)
}

func (u *unpickler) unicode(op byte) error {
	width := 1
	if op == 'X' {
		width = 4
	}
	n, err := u.uint(width)
	if err != nil {
		return err
	}
	b, err := u.need(int(n))
	if err != nil {
		return err
	}
	u.stack = append(u.stack, string(b))
	return nil
}

func (u *unpickler) global(byte) error {
	p := u.p
	end := bytes.IndexByte(p[u.pos:], '\n')
	if end < 0 {
		return fmt.Errorf("pickle GLOBAL truncated")
	}
	mod := string(p[u.pos : u.pos+end])
	u.pos += end + 1
	end = bytes.IndexByte(p[u.pos:], '\n')
	if end < 0 {
		return fmt.Errorf("pickle GLOBAL truncated")
	}
	u.stack = append(u.stack, pickleGlobal{mod, string(p[u.pos : u.pos+end])})
	u.pos += end + 1
	return nil
}

func (u *unpickler) memoPut(op byte) error {
	if len(u.stack) == 0 {
		return fmt.Errorf("pickle memo of an empty stack")
	}
	var i uint32
	var err error
	switch op {
	case 'q':
		i, err = u.uint(1)
	case 'r':
		i, err = u.uint(4)
	default:
		i = uint32(len(u.memo))
	}
	if err != nil {
		return err
	}
	u.memo[i] = u.stack[len(u.stack)-1]
	return nil
}

func (u *unpickler) memoGet(op byte) error {
	width := 4
	if op == 'h' {
		width = 1
	}
	i, err := u.uint(width)
	if err != nil {
		return err
	}
	v, ok := u.memo[i]
	if !ok {
		return fmt.Errorf("pickle memo %d undefined", i)
	}
	u.stack = append(u.stack, v)
	return nil
}

// binint: K (1 byte, unsigned), M (2 bytes, unsigned), J (4 bytes, signed).
func (u *unpickler) binint(op byte) error {
	width := 4
	switch op {
	case 'K':
		width = 1
	case 'M':
		width = 2
	}
	v, err := u.uint(width)
	if err != nil {
		return err
	}
	if op == 'J' {
		u.stack = append(u.stack, int64(int32(v)))
	} else {
		u.stack = append(u.stack, int64(v))
	}
	return nil
}

// long1: an n-byte little-endian two's complement integer.
func (u *unpickler) long1(byte) error {
	n, err := u.uint(1)
	if err != nil {
		return err
	}
	raw, err := u.need(int(n))
	if err != nil {
		return err
	}
	if len(raw) > 8 {
		return fmt.Errorf("pickle integer of %d bytes", len(raw))
	}
	be := make([]byte, len(raw))
	for i := range raw {
		be[len(raw)-1-i] = raw[i]
	}
	v := new(big.Int).SetBytes(be)
	if len(raw) > 0 && raw[len(raw)-1]&0x80 != 0 {
		v.Sub(v, new(big.Int).Lsh(big.NewInt(1), uint(8*len(raw))))
	}
	u.stack = append(u.stack, v.Int64())
	return nil
}

func (u *unpickler) binfloat(byte) error {
	b, err := u.need(8)
	if err != nil {
		return err
	}
	u.stack = append(u.stack, math.Float64frombits(binary.BigEndian.Uint64(b)))
	return nil
}

func (u *unpickler) tuple(byte) error {
	items, err := u.popMark()
	if err != nil {
		return err
	}
	u.stack = append(u.stack, items)
	return nil
}

// tupleN: TUPLE1, TUPLE2, TUPLE3 of the top items.
func (u *unpickler) tupleN(op byte) error {
	n := int(op - 0x84)
	if len(u.stack) < n {
		return fmt.Errorf("pickle stack underflow at byte %d", u.pos)
	}
	items := append([]any(nil), u.stack[len(u.stack)-n:]...)
	u.stack = append(u.stack[:len(u.stack)-n], items)
	return nil
}

// persid: a storage reference ('storage', torch.<Kind>Storage, key, location, numel).
func (u *unpickler) persid(byte) error {
	pid, err := u.pop()
	if err != nil {
		return err
	}
	t, ok := pid.([]any)
	if !ok || len(t) != 5 || t[0] != "storage" {
		return fmt.Errorf("unsupported persistent id %v", pid)
	}
	g, ok1 := t[1].(pickleGlobal)
	key, ok2 := t[2].(string)
	numel, ok3 := t[4].(int64)
	if !ok1 || !ok2 || !ok3 || g.module != "torch" {
		return fmt.Errorf("unsupported storage reference %v", t)
	}
	u.stack = append(u.stack, storageRef{kind: g.name, key: key, numel: numel})
	return nil
}

func (u *unpickler) reduce(byte) error {
	args, err := u.pop()
	if err != nil {
		return err
	}
	fn, err := u.pop()
	if err != nil {
		return err
	}
	v, err := pickleReduce(fn, args)
	if err != nil {
		return err
	}
	u.stack = append(u.stack, v)
	return nil
}

// build: object state (OrderedDict's _metadata) is not needed.
func (u *unpickler) build(byte) error {
	_, err := u.pop()
	return err
}

func (u *unpickler) setitems(op byte) error {
	var items []any
	if op == 's' {
		v, err := u.pop()
		if err != nil {
			return err
		}
		k, err := u.pop()
		if err != nil {
			return err
		}
		items = []any{k, v}
	} else {
		var err error
		if items, err = u.popMark(); err != nil {
			return err
		}
	}
	if len(u.stack) == 0 || len(items)%2 != 0 {
		return fmt.Errorf("pickle SETITEMS without a dict")
	}
	d, ok := u.stack[len(u.stack)-1].(*pickleDict)
	if !ok {
		return fmt.Errorf("pickle SETITEMS on a %T", u.stack[len(u.stack)-1])
	}
	for i := 0; i < len(items); i += 2 {
		d.set(items[i], items[i+1])
	}
	return nil
}

func (u *unpickler) appends(op byte) error {
	var items []any
	if op == 'a' {
		v, err := u.pop()
		if err != nil {
			return err
		}
		items = []any{v}
	} else {
		var err error
		if items, err = u.popMark(); err != nil {
			return err
		}
	}
	if len(u.stack) == 0 {
		return fmt.Errorf("pickle APPEND without a list")
	}
	l, ok := u.stack[len(u.stack)-1].(*pickleList)
	if !ok {
		return fmt.Errorf("pickle APPEND on a %T", u.stack[len(u.stack)-1])
	}
	l.items = append(l.items, items...)
	return nil
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
		return rebuildTensor(a)
	case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
		if len(a) == 0 {
			return nil, fmt.Errorf("%s without arguments", g.name)
		}
		return a[0], nil
	}
	return nil, fmt.Errorf("unsupported pickled object %s.%s (not a state dict of tensors)", g.module, g.name)
}

// rebuildTensor is torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...).
func rebuildTensor(a []any) (any, error) {
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
}
