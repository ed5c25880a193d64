// Package dist is sli2vol's data-parallel training over libtorch's own torch.distributed
// engine (c10d), reached through the torchx shim: a TCPStore rendezvous, a Gloo (CPU, or CUDA
// tensors) or NCCL (CUDA) process group, and DistributedDataParallel's Reducer, which
// all-reduces gradient buckets from autograd hooks while the backward pass runs. Nothing in
// it is a protocol of ours.
//
// A process learns its place from the environment torchrun, SLURM and Kubeflow's PyTorchJob
// set (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT; see Env), or
// from Launch, the Go-native launcher behind `sli2vol train --nproc N`.
package dist
