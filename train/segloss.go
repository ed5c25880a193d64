package train

import (
	"github.com/sli2vol/sli2vol/torchx"
)

// DiceCELoss is nnU-Net's segmentation loss (DC_and_CE_loss with batch Dice, background
// excluded, smooth 1e-5): cross-entropy averaged over the known voxels plus 1 − the soft
// Dice of the softmax, each class's true/false positives summed over the batch and all
// voxels. nnU-Net adds −Dice; 1 − Dice has the same gradient and stays non-negative in logs.
//
// logits is B×K×D×H×W, target B×D×H×W class indices (int64), known B×1×D×H×W 0/1 weights
// (voxels with weight 0 do not count: the FS-SS baseline knows one slice per volume).
func DiceCELoss(logits, target, known torchx.Tensor) torchx.Tensor {
	return torchx.Tidy(func() torchx.Tensor { return diceCE(logits, target, known) })
}

func diceCE(logits, target, known torchx.Tensor) torchx.Tensor {
	k := logits.Shape()[1]
	// Unknown voxels get ignore index −100 for the cross-entropy.
	kn := torchx.Squeeze(known, 1)
	ignored := torchx.Where(torchx.GtScalar(kn, 0.5), target, torchx.Full(target.Shape(), -100, torchx.Int64, torchx.DeviceOf(target)))
	ce := torchx.CrossEntropy(logits, ignored, torchx.Tensor{}, torchx.ReduceMean, -100, 0)

	p := torchx.Mul(torchx.Softmax(logits, 1), known)
	y := torchx.Mul(torchx.Permute(torchx.To(torchx.OneHot(target, k), torchx.DeviceOf(logits), torchx.DTypeOf(logits)), 0, 4, 1, 2, 3), known)
	tp := torchx.Sum(torchx.Mul(p, y), false, 0, 2, 3, 4)
	fp := torchx.Sub(torchx.Sum(p, false, 0, 2, 3, 4), tp)
	fn := torchx.Sub(torchx.Sum(y, false, 0, 2, 3, 4), tp)
	const smooth = 1e-5
	num := torchx.AddScalar(torchx.MulScalar(tp, 2), smooth)
	den := torchx.AddScalar(torchx.Add(torchx.MulScalar(tp, 2), torchx.Add(fp, fn)), smooth)
	dc := torchx.Mean(torchx.Narrow(torchx.Div(num, den), 0, 1, k-1), false)
	return torchx.Add(ce, torchx.AddScalar(torchx.Neg(dc), 1))
}
