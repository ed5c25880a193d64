package data

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/okieraised/gonii/pkg/nifti"
)

// Reading from and writing to streams, for callers that hold no file: an upload is decoded
// as it arrives (the header, and so the voxel limit, is checked before the voxels are read),
// and a mask is encoded straight into a response.

// VoxelLimitError is a volume refused because it has more voxels than Limits.MaxVoxels
// (errors.As tells it apart from a malformed file).
type VoxelLimitError struct {
	Dims          [3]int64
	Voxels, Limit int64
}

func (e *VoxelLimitError) Error() string {
	return fmt.Sprintf("%d×%d×%d = %d voxels, over the limit of %d (limits.max_voxels)",
		e.Dims[0], e.Dims[1], e.Dims[2], e.Voxels, e.Limit)
}

// ReadImage reads a NIfTI image (.nii, or gzipped: told by content) from r, as LoadImage
// reads a file; name labels the errors and becomes the geometry's Source.
func ReadImage(name string, r io.Reader, lim Limits) (*Image, error) {
	h, raw, err := readAny(name, r, lim)
	if err != nil {
		return nil, err
	}
	return imageFrom(h, raw, name)
}

// ReadLabels reads a NIfTI label volume from r, as LoadLabels reads a file.
func ReadLabels(name string, r io.Reader, lim Limits) (*Labels, error) {
	h, raw, err := readAny(name, r, lim)
	if err != nil {
		return nil, err
	}
	return labelsFrom(h, raw, name)
}

// readAny is readStream after inflating gzip when the stream starts with its magic.
func readAny(name string, r io.Reader, lim Limits) (*Header, []byte, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, _ := br.Peek(2)
	if len(magic) < 2 || magic[0] != 0x1f || magic[1] != 0x8b {
		return readStream(name, br, false, lim)
	}
	gz, err := gzip.NewReader(br)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: not a valid gzip stream: %w", name, err)
	}
	defer gz.Close()
	return readStream(name, gz, true, lim)
}

// EncodeLabels writes ids as an uncompressed NIfTI on g's grid with g's header geometry, as
// WriteLabels does to a file (wrap w in a gzip.Writer for .nii.gz).
func EncodeLabels(w io.Writer, data []int32, g *Geometry) error {
	dt, body, err := labelEncoding(data, g)
	if err != nil {
		return err
	}
	return encodeNIfTI(w, g, dt, body)
}

// EncodeImage writes intensities as an uncompressed float32 NIfTI on g's grid with g's
// header geometry, in blocks (a 512×512×300 CT is not copied whole into a buffer).
func EncodeImage(w io.Writer, data []float32, g *Geometry) error {
	if len(data) != g.NumVoxels() {
		return fmt.Errorf("%d voxels for a %v grid", len(data), g.Shape)
	}
	return encodeNIfTI(w, g, nifti.DT_FLOAT32, func(w io.Writer) error {
		const block = 1 << 16
		buf := make([]byte, 4*block)
		for i := 0; i < len(data); i += block {
			part := data[i:min(i+block, len(data))]
			for k, v := range part {
				binary.LittleEndian.PutUint32(buf[4*k:], math.Float32bits(v))
			}
			if _, err := w.Write(buf[:4*len(part)]); err != nil {
				return err
			}
		}
		return nil
	})
}
