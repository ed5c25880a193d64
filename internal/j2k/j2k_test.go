package j2k

import "testing"

// Garbage is an error, not a crash; the real decoding is tested on the shared JPEG 2000 DICOM
// series in data (TestRealDICOMSeries: same grid as the label volume made from it).
func TestDecodeRejectsGarbage(t *testing.T) {
	for _, b := range [][]byte{nil, {1, 2, 3}, []byte("\xff\x4f\xff\x51 not really a codestream at all")} {
		if _, err := Decode(b); err == nil {
			t.Fatalf("%q decoded", b)
		}
	}
}
