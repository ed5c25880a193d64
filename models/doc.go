// Package models holds sli2vol's networks as plain Go structs of parameters and sub-modules
// with ordinary Forward methods: the gradient-enhanced image generator (GEIG), Sli2Vol's edge
// profile, the full-resolution ResNet encoder, the OEG-CFN and Sli2Vol CFN (whose affinity
// and aggregation call torchx's fused local-affinity op), and UNETR++. Parameter names follow
// PyTorch's conventions so that state dicts load in PyTorch. Each network takes its own small
// config type (CFNConfig, UNETRPPConfig); the runs package translates the config's sections
// into them.
package models
