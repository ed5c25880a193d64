package torchx

import (
	"fmt"
	"os"
	"sort"

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

// DecodeStateDict reads what EncodeStateDict or Python's torch.save wrote: a dict (or the
// OrderedDict of model.state_dict()) of tensors, decoded in Go (internal/torchload).
func DecodeStateDict(b []byte) (map[string]Tensor, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("empty state dict")
	}
	var sd map[string]Tensor
	err := Try(func() {
		var err error
		if sd, err = decodeTorchSave(b); err != nil {
			panic(&Error{Msg: err.Error()})
		}
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
