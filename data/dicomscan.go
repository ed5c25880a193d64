package data

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// checkDICOMLengths walks every element header of a DICOM Part 10 file — file meta, dataset,
// nested sequence items, pixel-data fragments — and refuses any declared value length larger
// than the bytes that remain. The DICOM library allocates a buffer of the declared length
// before reading it, so without this a few-KB file can demand gigabytes (found by FuzzDICOM).
func checkDICOMLengths(b []byte) error {
	if len(b) < 132 || string(b[128:132]) != "DICM" {
		return errors.New("not a DICOM Part 10 file (no DICM marker)")
	}
	pos := 132
	explicit := true // file meta (group 2) is always explicit VR little endian
	metaEnd := -1
	metaChecked := false
	pixelMode := false // inside encapsulated pixel data, items are raw fragments
	for steps := 0; pos < len(b); steps++ {
		if steps > 1<<22 {
			return errors.New("too many DICOM elements")
		}
		if metaEnd >= 0 && pos >= metaEnd && !metaChecked {
			metaChecked = true
			explicit = !metaTSImplicit(b, metaEnd)
		}
		if pos+8 > len(b) {
			return fmt.Errorf("element header truncated at byte %d", pos)
		}
		group := binary.LittleEndian.Uint16(b[pos:])
		elem := binary.LittleEndian.Uint16(b[pos+2:])
		var length uint32
		var vr string
		switch {
		case group == 0xFFFE: // item, item delimiter, sequence delimiter: no VR
			length = binary.LittleEndian.Uint32(b[pos+4:])
			pos += 8
			if elem == 0xE000 { // an item: its elements follow (descend)
				if length != 0xFFFFFFFF && int64(length) > int64(len(b)-pos) {
					return fmt.Errorf("item of %d bytes at byte %d, %d left", length, pos, len(b)-pos)
				}
				if pixelMode && length != 0xFFFFFFFF {
					pos += int(length) // a pixel-data fragment: raw bytes
				}
				continue
			}
			if elem == 0xE0DD {
				pixelMode = false
			}
			continue
		case explicit || group == 2:
			vr = string(b[pos+4 : pos+6])
			switch vr {
			case "OB", "OW", "OF", "SQ", "UT", "UN", "OD", "OL", "OV", "SV", "UV", "UC", "UR":
				if pos+12 > len(b) {
					return fmt.Errorf("element header truncated at byte %d", pos)
				}
				length = binary.LittleEndian.Uint32(b[pos+8:])
				pos += 12
			default:
				length = uint32(binary.LittleEndian.Uint16(b[pos+6:]))
				pos += 8
			}
		default:
			length = binary.LittleEndian.Uint32(b[pos+4:])
			pos += 8
			if info, err := tag.Find(tag.Tag{Group: group, Element: elem}); err == nil && len(info.VRs) > 0 {
				vr = info.VRs[0]
			}
		}
		if group == 2 && elem == 0 && length == 4 && pos+4 <= len(b) {
			metaEnd = pos + 4 + int(binary.LittleEndian.Uint32(b[pos:]))
		}
		if length == 0xFFFFFFFF { // undefined length: sequence or encapsulated pixel data follow
			pixelMode = group == 0x7FE0
			continue
		}
		if int64(length) > int64(len(b)-pos) {
			return fmt.Errorf("element (%04x,%04x) declares %d bytes at byte %d, only %d left", group, elem, length, pos, len(b)-pos)
		}
		if vr == "SQ" {
			continue // defined-length sequence: walk into its items
		}
		pos += int(length)
	}
	return nil
}

// metaTSImplicit reports whether the transfer syntax recorded in the file meta is implicit
// VR little endian. It scans the meta group (which ends at metaEnd) for (0002,0010).
func metaTSImplicit(b []byte, metaEnd int) bool {
	for p := 132; p+8 <= metaEnd && p+8 <= len(b); {
		g, e := binary.LittleEndian.Uint16(b[p:]), binary.LittleEndian.Uint16(b[p+2:])
		vr := string(b[p+4 : p+6])
		var n, hdr int
		switch vr {
		case "OB", "OW", "OF", "SQ", "UT", "UN":
			if p+12 > len(b) {
				return false
			}
			n, hdr = int(binary.LittleEndian.Uint32(b[p+8:])), 12
		default:
			n, hdr = int(binary.LittleEndian.Uint16(b[p+6:])), 8
		}
		if g == 2 && e == 0x10 {
			end := p + hdr + n
			if end > len(b) {
				return false
			}
			v := string(b[p+hdr : end])
			for len(v) > 0 && (v[len(v)-1] == 0 || v[len(v)-1] == ' ') {
				v = v[:len(v)-1]
			}
			return v == "1.2.840.10008.1.2"
		}
		if n < 0 || p+hdr+n > len(b) {
			return false
		}
		p += hdr + n
	}
	return false
}
