package cache

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"unsafe"

	"github.com/sli2vol/sli2vol/internal/atomicfile"
)

// Arrays are stored as NumPy .npy (format 1.0, C order), which numpy.load and np.memmap
// read as they are. Values are little-endian; so is every machine sli2vol runs on (amd64,
// arm64), which lets a read land in the destination slice without conversion.

const npyMagic = "\x93NUMPY\x01\x00"

// writeNPY writes a D×H×W array of dtype ("<f4", "|u1", "<i4") atomically; fill writes the
// D·H·W values in order.
func writeNPY(path, dtype string, shape [3]int, fill func(w io.Writer) error) error {
	return atomicfile.Write(path, func(f *os.File) error {
		dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%d, %d, %d), }", dtype, shape[0], shape[1], shape[2])
		pad := 64 - (len(npyMagic)+2+len(dict)+1)%64 // the data starts 64-byte aligned
		hdr := dict + string(bytes.Repeat([]byte(" "), pad%64)) + "\n"
		var n [2]byte
		binary.LittleEndian.PutUint16(n[:], uint16(len(hdr)))
		if _, err := f.Write(append(append([]byte(npyMagic), n[:]...), hdr...)); err != nil {
			return err
		}
		return fill(f)
	})
}

var npyDict = regexp.MustCompile(`'descr': '([<|][fiu][148])', 'fortran_order': False, 'shape': \((\d+), (\d+), (\d+)\)`)

// npyHeader reads an .npy header: where the data starts, its dtype and shape.
func npyHeader(f *os.File) (offset int64, dtype string, shape [3]int, err error) {
	head := make([]byte, 10)
	if _, err = f.ReadAt(head, 0); err != nil || string(head[:8]) != npyMagic {
		return 0, "", shape, fmt.Errorf("%s: not an .npy file of this cache", f.Name())
	}
	n := int64(binary.LittleEndian.Uint16(head[8:]))
	dict := make([]byte, n)
	if _, err = f.ReadAt(dict, 10); err != nil {
		return 0, "", shape, fmt.Errorf("%s: truncated .npy header", f.Name())
	}
	m := npyDict.FindSubmatch(dict)
	if m == nil {
		return 0, "", shape, fmt.Errorf("%s: unexpected .npy header %q", f.Name(), bytes.TrimSpace(dict))
	}
	for a := range 3 {
		shape[a], _ = strconv.Atoi(string(m[2+a]))
	}
	return 10 + n, string(m[1]), shape, nil
}

// asBytes views a slice of fixed-size values as its bytes (little-endian in memory).
func asBytes[T float32 | int32 | uint8](v []T) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*int(unsafe.Sizeof(v[0])))
}

// itemSize is the bytes per value of dtype.
func itemSize(dtype string) int {
	n, _ := strconv.Atoi(dtype[2:])
	return n
}
