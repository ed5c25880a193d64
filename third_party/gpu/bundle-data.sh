#!/usr/bin/env bash
# Copies the shared real CT volumes (about 8 MiB; images only: the paper model's Sli2Vol
# training reads no label) into a GPU bundle's data/ with data/ct.yaml listing them, for
# device-run.sh paper-model. Usage: bundle-data.sh REAL DEST (REAL: ../shared/data/real).
set -euo pipefail
real=${1:?usage: bundle-data.sh REAL DEST}
dest=${2:?usage: bundle-data.sh REAL DEST}
mkdir -p "$dest/ct"
{
  echo "name: shared-real-ct"
  echo "cases:"
  for f in "$real"/ts-vessels-ct/imagesTr/*.nii.gz "$real"/ts-abdomen-ct/imagesTr/*.nii.gz; do
    cp "$f" "$dest/ct/"
    echo "  - {image: ct/$(basename "$f")}"
  done
  # the same patient's longer, unlabelled CT: a volume of the modality all the same
  cp "$real/ts-abdomen-ct/unlabeled/ts_abdomen_full.nii.gz" "$dest/ct/"
  echo "  - {image: ct/ts_abdomen_full.nii.gz}"
} >"$dest/ct.yaml"
du -sh "$dest"
