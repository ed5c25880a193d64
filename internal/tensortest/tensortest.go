// Package tensortest holds helpers shared by tests that compare saved weights.
package tensortest

import (
	"testing"

	"github.com/sli2vol/sli2vol/torchx"
)

// ReadState loads a torch.save'd state dict as float64 values by name (any dtype, any
// device), failing the test when it cannot be read.
func ReadState(t testing.TB, path string) map[string][]float64 {
	t.Helper()
	sd, err := torchx.LoadStateDict(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float64{}
	for k, v := range sd {
		out[k] = torchx.Float64s(torchx.To(v, "cpu", torchx.Float64))
	}
	return out
}
