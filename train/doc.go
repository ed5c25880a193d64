// Package train holds sli2vol's training loops (one readable loop per network, no framework
// hidden behind it), optimizer and schedule construction from config, and checkpoints with
// exact resume.
package train
