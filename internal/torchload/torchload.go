// Package torchload reads torch.save files in pure Go (no cgo, so it can be fuzzed without
// libtorch): the zip container and the pickle inside it. Python's
// torch.save(model.state_dict()) pickles an OrderedDict with a _metadata attribute, which
// libtorch 1.13's pickle_load cannot read; and libtorch's reader can crash on corrupt input.
// This reader understands the opcodes torch.save emits for dicts of tensors (protocols 2–4)
// and nothing else, so unknown or malicious content is an error, never code execution.
// torchx turns what it decodes into tensors.
package torchload

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// Tensor is one decoded state-dict entry.
type Tensor struct {
	Storage string  // the torch.<Kind>Storage it was saved from: FloatStorage, LongStorage, ...
	Shape   []int64 // its size; empty for a 0-d tensor
	Data    []byte  // its elements in row-major order, little-endian, ElemSize(Storage) bytes each
}

var elemSizes = map[string]int{
	"ByteStorage": 1, "CharStorage": 1, "ShortStorage": 2, "IntStorage": 4, "LongStorage": 8,
	"HalfStorage": 2, "FloatStorage": 4, "DoubleStorage": 8, "BoolStorage": 1,
	"BFloat16Storage": 2,
}

// ElemSize is the size in bytes of one element of a torch.<kind> storage ("FloatStorage"),
// and whether the reader accepts that storage.
func ElemSize(kind string) (int, bool) {
	n, ok := elemSizes[kind]
	return n, ok
}

// Decode reads a torch.save zip holding a dict (or the OrderedDict of model.state_dict()) of
// tensors and calls fn with each entry, in the dict's order, as it is decoded. An error from
// fn ends decoding and is returned.
func Decode(b []byte, fn func(name string, t Tensor) error) error {
	a, err := openArchive(b)
	if err != nil {
		return err
	}
	if bo, err := a.read("byteorder", 16); err == nil && strings.TrimSpace(string(bo)) != "little" {
		return fmt.Errorf("byte order %q: only little-endian files are read", bo)
	}
	pkl, err := a.read("data.pkl", 1<<28)
	if err != nil {
		return err
	}
	root, err := unpickle(pkl)
	if err != nil {
		return err
	}
	d, ok := root.(*pickleDict)
	if !ok {
		return fmt.Errorf("the file holds a %T, not a dict of tensors", root)
	}
	storages := map[string][]byte{}
	for i, k := range d.keys {
		name, t, err := a.entry(k, d.vals[i], storages)
		if err != nil {
			return err
		}
		if err := fn(name, t); err != nil {
			return err
		}
	}
	return nil
}

// archive is the zip's records, by name, and the folder that holds data.pkl.
type archive struct {
	records map[string]*zip.File
	prefix  string
}

func openArchive(b []byte) (*archive, error) {
	z, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, fmt.Errorf("not a torch.save zip archive (truncated or corrupt): %w", err)
	}
	a := &archive{records: map[string]*zip.File{}}
	for _, f := range z.File {
		a.records[f.Name] = f
		if strings.HasSuffix(f.Name, "/data.pkl") {
			a.prefix = strings.TrimSuffix(f.Name, "data.pkl")
		}
	}
	if a.prefix == "" {
		return nil, fmt.Errorf("no data.pkl record: not a torch.save file")
	}
	return a, nil
}

// read returns the record name (under the archive's folder), refusing one of more than
// limit bytes.
func (a *archive) read(name string, limit int64) ([]byte, error) {
	f, ok := a.records[a.prefix+name]
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

// entry decodes the dict entry k → v, reading its storage unless storages has it already.
func (a *archive) entry(k, v any, storages map[string][]byte) (string, Tensor, error) {
	name, ok := k.(string)
	if !ok {
		return "", Tensor{}, fmt.Errorf("state dict key %v is not a string", k)
	}
	spec, ok := v.(tensorSpec)
	if !ok {
		return "", Tensor{}, fmt.Errorf("state dict entry %s is not a tensor (%T)", name, v)
	}
	size, ok := elemSizes[spec.storage.kind]
	if !ok {
		return "", Tensor{}, fmt.Errorf("entry %s: unsupported storage %s", name, spec.storage.kind)
	}
	es := int64(size)
	data, ok := storages[spec.storage.key]
	if !ok {
		var err error
		if data, err = a.storage(spec.storage, es); err != nil {
			return "", Tensor{}, fmt.Errorf("entry %s: %w", name, err)
		}
		storages[spec.storage.key] = data
	}
	t, err := gather(data, es, spec)
	if err != nil {
		return "", Tensor{}, fmt.Errorf("entry %s: %w", name, err)
	}
	return name, Tensor{Storage: spec.storage.kind, Shape: spec.size, Data: t}, nil
}

// storage reads the record of s, es bytes an element.
func (a *archive) storage(s storageRef, es int64) ([]byte, error) {
	if s.numel < 0 || s.numel > 1<<34 {
		return nil, fmt.Errorf("storage of %d elements", s.numel)
	}
	data, err := a.read("data/"+s.key, s.numel*es)
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != s.numel*es {
		return nil, fmt.Errorf("storage has %d bytes, want %d", len(data), s.numel*es)
	}
	return data, nil
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
