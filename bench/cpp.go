package bench

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/torchx"
)

// writeCpp writes what bench/cpp/cfn_step (the same training step in plain C++ libtorch)
// reads: dir/cpp.bin, every tensor as u32 name length, name, u8 kind (1: a parameter the
// optimizer trains, 0: a buffer or an input), u32 rank, i64 dims, float32 data; and
// dir/cpp.txt, the settings as "key value" lines.
func writeCpp(dir string, c *configs.Config, m *models.CFN, batch map[string]torchx.Tensor) error {
	k, ok := m.Input.(interface{ FilterKernel() (torchx.Tensor, int) })
	if !ok {
		return fmt.Errorf("cpp: the model's input has no fixed filter")
	}
	kernel, reach := k.FilterKernel()
	tensors := map[string]torchx.Tensor{"input.kernel": kernel}
	for name, t := range models.StateDict(m) {
		if strings.HasSuffix(name, "num_batches_tracked") {
			continue // not read by batch norm with a fixed momentum
		}
		tensors[name] = t
	}
	for name, t := range batch {
		tensors["batch."+name] = t
	}
	var names []string
	for n := range tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	f, err := os.Create(filepath.Join(dir, "cpp.bin"))
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	le := binary.LittleEndian
	for _, n := range names {
		t := tensors[n]
		kind := uint8(1)
		if strings.HasPrefix(n, "batch.") || n == "input.kernel" || strings.HasSuffix(n, "running_mean") || strings.HasSuffix(n, "running_var") {
			kind = 0
		}
		binary.Write(w, le, uint32(len(n)))
		w.WriteString(n)
		w.WriteByte(kind)
		sh := t.Shape()
		binary.Write(w, le, uint32(len(sh)))
		binary.Write(w, le, sh)
		vals := torchx.Float32s(torchx.To(t, "cpu", torchx.Float32))
		buf := make([]byte, 4*len(vals))
		for i, v := range vals {
			le.PutUint32(buf[4*i:], math.Float32bits(v))
		}
		w.Write(buf)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	bn := m.Encoder.BN1 // every batch norm of the encoder has the same settings
	loss := c.Train.Loss
	kv := fmt.Sprintf("mode %s\nradius %d\nreach %d\nbn_momentum %g\nbn_eps %g\nintensity_scale %g\nlr %g\nweight_decay %g\nloss %s\n",
		c.Model.Mode, m.Radius, reach, bn.Momentum, bn.Eps, c.Data.IntensityScale, c.Train.LR, c.Train.WeightDecay, loss)
	return os.WriteFile(filepath.Join(dir, "cpp.txt"), []byte(kv), 0o644)
}
