// Package bench measures sli2vol against the repo's PyTorch reference (bench/pytorch) on
// the same model, weights, batch, threads and machine: training-step throughput through the
// trainer's own Stepper, propagation speed through infer's Propagator, and peak memory. The
// sli2vol-bench command and bench/run.sh (make bench) drive it; BENCHMARKS.md is the output.
package bench
