// Package runs owns the run folder: what a training run writes (config.yaml, checkpoint.pt,
// model.pt, metrics.jsonl, classes.json), how checkpoints are stored and restored, how a
// finished run is loaded back for inference (and moved to a device), and the exports and
// imports of its weights (PyTorch state dicts, TorchScript).
//
// It sits between the networks and their users: train writes run folders through it, and
// the inference commands (segment, pseudo-label, evaluate, export) read them through it
// without importing train. It also translates the config's model sections into the models
// package's own config types, so models never sees a configs.Config.
package runs
