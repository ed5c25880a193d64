// Package train holds sli2vol's training loops, one readable loop per network (TrainCFN,
// TrainUNETRPP: sample, step, record), and the run harness beside them (run.go): run folder,
// resume, metrics.jsonl, progress, checkpoints, stop-after, signals and the non-finite-loss
// stop. Optimizer and schedule construction from config live here too; the run folder's
// files and checkpoints themselves belong to the runs package.
package train
