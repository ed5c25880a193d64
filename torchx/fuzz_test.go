package torchx

import (
	"testing"
)

// FuzzStateDict: no input makes the Go torch.save reader panic or read outside a storage.
func FuzzStateDict(f *testing.F) {
	for _, sd := range []map[string]Tensor{
		{"w": FromFloat32([]float32{1, 2, 3, 4}, 2, 2), "n": FromInt64([]int64{7})},
		{"t": Permute(FromFloat64([]float64{1, 2, 3, 4, 5, 6}, 2, 3), 1, 0)},
	} {
		b, err := EncodeStateDict(sd)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sd, err := DecodeStateDict(b)
		if err != nil {
			return
		}
		for _, v := range sd {
			Numel(v)
		}
	})
}
