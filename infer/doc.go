// Package infer propagates an annotated slice through a volume with a trained correspondence
// network, generates and refines pseudo-labels, and evaluates masks (Dice, HD95) into reports.
package infer
