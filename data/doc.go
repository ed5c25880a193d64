// Package data reads and writes volumes with their geometry (NIfTI; DICOM series, uncompressed
// or JPEG 2000, read only), picks the slice axis
// from the affine, normalises intensities (CT windows, MRI percentiles), lists datasets,
// finds or chooses the annotated slice, samples training pairs and builds synthetic phantoms.
// It knows nothing of models; one small bridge file turns slices into tensors.
package data
