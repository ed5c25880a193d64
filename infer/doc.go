// Package infer propagates an annotated slice through a volume with a trained correspondence
// network, generates pseudo-labels and refines them with a 3D network predicted by sliding
// windows, builds the FS-SS baseline's data, and evaluates masks (Dice, HD95) into reports.
package infer
