package torchx

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/sli2vol/sli2vol/internal/torchload"
)

// Reading torch.save files: internal/torchload decodes them in pure Go; this turns each
// entry into a CPU tensor of its own dtype.

var storageDTypes = map[string]DType{}

func init() {
	for dt, name := range storageNames {
		storageDTypes[name] = dt
	}
}

// decodeTorchSave reads a torch.save zip holding a dict of tensors.
func decodeTorchSave(b []byte) (map[string]Tensor, error) {
	out := map[string]Tensor{}
	err := torchload.Decode(b, func(name string, t torchload.Tensor) error {
		dt, ok := storageDTypes[t.Storage]
		if !ok {
			return fmt.Errorf("entry %s: unsupported storage %s", name, t.Storage)
		}
		es, _ := torchload.ElemSize(t.Storage)
		out[name] = tensorFromBytes(t.Data, len(t.Data)/es, dt, t.Shape)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func tensorFromBytes(b []byte, n int, dt DType, shape []int64) Tensor {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	t := fromData(p, n, dt, "", shape)
	runtime.KeepAlive(b)
	return t
}
