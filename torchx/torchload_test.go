package torchx

import (
	"testing"

	"github.com/sli2vol/sli2vol/internal/torchload"
)

// Every dtype the writer saves is a storage the reader knows, with the dtype's element size.
func TestStorageNames(t *testing.T) {
	sizes := map[DType]int{Uint8: 1, Int8: 1, Int16: 2, Int32: 4, Int64: 8, Float16: 2, Float32: 4,
		Float64: 8, Bool: 1, BFloat16: 2}
	if len(storageNames) != len(sizes) {
		t.Fatalf("%d storage names for %d dtypes", len(storageNames), len(sizes))
	}
	for dt, want := range sizes {
		name, ok := storageNames[dt]
		if !ok {
			t.Fatalf("dtype %d has no storage", dt)
		}
		if got, ok := torchload.ElemSize(name); !ok || got != want {
			t.Errorf("%s: element size %d (known %v), want %d", name, got, ok, want)
		}
		if storageDTypes[name] != dt {
			t.Errorf("%s reads back as dtype %d, want %d", name, storageDTypes[name], dt)
		}
	}
}
