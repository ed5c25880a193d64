package bench

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
)

// writeNPY stores a volume in NumPy's .npy format (version 1.0, Fortran order, so that
// index [i, j, k] is NIfTI voxel (i, j, k)): the PyTorch side reads it with numpy alone, with
// no nibabel on a device machine. v is []float32 or []int32.
func writeNPY(path string, shape [3]int, v any) error {
	descr := "<f4"
	if _, ok := v.([]int32); ok {
		descr = "<i4"
	}
	header := fmt.Sprintf("{'descr': '%s', 'fortran_order': True, 'shape': (%d, %d, %d), }", descr, shape[0], shape[1], shape[2])
	// Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64
	// and ended by a newline.
	pad := 64 - (10+len(header)+1)%64
	if pad == 64 {
		pad = 0
	}
	header += string(bytes.Repeat([]byte{' '}, pad)) + "\n"
	var b bytes.Buffer
	b.WriteString("\x93NUMPY\x01\x00")
	binary.Write(&b, binary.LittleEndian, uint16(len(header)))
	b.WriteString(header)
	if err := binary.Write(&b, binary.LittleEndian, v); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}
