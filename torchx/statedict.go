package torchx

// #include <stdlib.h>
// #include "torchx.h"
import "C"

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"unsafe"

	"github.com/sli2vol/sli2vol/internal/atomicfile"
)

// EncodeStateDict serialises named tensors as Python's torch.save does for a dict of
// tensors (see torchsave.go), so torch.load reads it back as a plain dict, also with
// weights_only=True. Tensors are saved from the CPU, contiguous, in their own dtype.
func EncodeStateDict(sd map[string]Tensor) ([]byte, error) {
	names := make([]string, 0, len(sd))
	for k := range sd {
		names = append(names, k)
	}
	sort.Strings(names) // a stable file for the same weights
	ts := make([]Tensor, len(names))
	for i, k := range names {
		ts[i] = sd[k]
	}
	var out []byte
	err := Try(func() {
		var err error
		out, err = encodeTorchSave(names, ts)
		if err != nil {
			panic(&Error{Msg: err.Error()})
		}
	})
	return out, err
}

// checkContainer verifies torch.save's zip container in Go before libtorch sees it:
// libtorch's reader can crash the process (SIGSEGV) on a truncated or corrupt file instead of
// throwing, so only an intact archive — central directory, every record's CRC, a data.pkl —
// is handed to it.
func checkContainer(b []byte) error {
	z, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return fmt.Errorf("not a torch.save zip archive (truncated or corrupt): %v", err)
	}
	pkl := false
	for _, f := range z.File {
		if strings.HasSuffix(f.Name, "/data.pkl") {
			pkl = true
		}
		r, err := f.Open()
		if err != nil {
			return fmt.Errorf("record %s: %v", f.Name, err)
		}
		_, err = io.Copy(io.Discard, r)
		r.Close()
		if err != nil {
			return fmt.Errorf("record %s is corrupt: %v", f.Name, err)
		}
	}
	if !pkl {
		return fmt.Errorf("no data.pkl record: not a torch.save file")
	}
	return nil
}

// DecodeStateDict reads what EncodeStateDict or Python's torch.save(dict) wrote.
func DecodeStateDict(b []byte) (map[string]Tensor, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("empty state dict")
	}
	if err := checkContainer(b); err != nil {
		return nil, err
	}
	var sd map[string]Tensor
	err := Try(func() {
		var names **C.char
		var ts *C.TxTensor
		var n C.int
		check(C.tx_pickle_load((*C.char)(unsafe.Pointer(&b[0])), C.int64_t(len(b)), &names, &ts, &n))
		runtime.KeepAlive(b)
		ns := unsafe.Slice(names, int(n))
		hs := unsafe.Slice(ts, int(n))
		sd = make(map[string]Tensor, int(n))
		for i := range ns {
			sd[C.GoString(ns[i])] = wrap(hs[i])
			C.free(unsafe.Pointer(ns[i]))
		}
		C.free(unsafe.Pointer(names))
		C.free(unsafe.Pointer(ts))
	})
	return sd, err
}

// SaveStateDict writes sd to path atomically (temp file in the same folder, then rename).
func SaveStateDict(path string, sd map[string]Tensor) error {
	b, err := EncodeStateDict(sd)
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return atomicfile.WriteFile(path, b)
}

// LoadStateDict reads a state dict file written by SaveStateDict or torch.save.
func LoadStateDict(path string) (map[string]Tensor, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	sd, err := DecodeStateDict(b)
	if err != nil {
		return nil, fmt.Errorf("load %s: not a readable state dict: %w", path, err)
	}
	return sd, nil
}
