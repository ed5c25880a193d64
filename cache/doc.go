// Package cache keeps training data on disk in the layout training reads it in, so that a
// dataset far larger than memory trains with bounded RAM.
//
// A cache folder holds, per case, the decoded image in anatomical slice order (D×H×W
// float32, raw intensities) and its pseudo-labels (uint8 or int32) as .npy files a step
// reads a slice or a patch of with one positioned read; the foreground voxel lists UNETR++
// samples patches around; and a small JSON entry with the geometry, the normaliser's
// decision, the standardisation statistics and the fingerprint of the files it came from.
// index.json records the config keys the contents depend on: a cache made under other
// settings is refused, naming the key, and rebuilt only when asked (--force). Every file is
// written atomically and a case's entry last, so an interrupted Prepare resumes where it
// stopped.
//
// Without a cache, Resident bounds the decoded volumes held in memory at once (least
// recently used dropped, decoded again when needed).
//
// The package knows no torch; it feeds data's samplers through data.SliceReader.
package cache
