// Small NIfTI-1 helpers for what NiiVue does not give us directly: which array slices a
// label volume marks (to tell the user what will be sent), gzip for uploads, and intensity
// percentiles for the MRI window.

// niftiDims reads dims and the data offset of an uncompressed NIfTI-1 file (either endian).
export function niftiHeader (bytes) {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let le = true
  if (dv.getInt32(0, true) !== 348) {
    if (dv.getInt32(0, false) !== 348) throw new Error('not a NIfTI-1 file')
    le = false
  }
  const dims = [dv.getInt16(42, le), dv.getInt16(44, le), dv.getInt16(46, le)].map(d => Math.max(1, d))
  return { dims, datatype: dv.getInt16(70, le), voxOffset: Math.round(dv.getFloat32(108, le)), le }
}

// labelledSlices lists the array indices along axis that hold a non-zero voxel of a uint8
// NIfTI (NiiVue's drawing export), with the label ids seen.
export function labelledSlices (bytes, axis) {
  const h = niftiHeader(bytes)
  if (h.datatype !== 2) throw new Error(`drawing export: datatype ${h.datatype}, want uint8`)
  const [nx, ny, nz] = h.dims
  const data = bytes.subarray(h.voxOffset, h.voxOffset + nx * ny * nz)
  const slices = new Set()
  const labels = new Set()
  let count = 0
  for (let v = 0; v < data.length; v++) {
    if (data[v] === 0) continue
    count++
    labels.add(data[v])
    const i = v % nx
    const j = Math.floor(v / nx) % ny
    const k = Math.floor(v / (nx * ny))
    slices.add(axis === 0 ? i : axis === 1 ? j : k)
  }
  return {
    slices: [...slices].sort((a, b) => a - b),
    labels: [...labels].sort((a, b) => a - b),
    count
  }
}

// gzip with the browser's own CompressionStream: a drawing is mostly zeros, so a
// 512×512×300 volume (79 MB as uint8) goes up as a few hundred kB.
export async function gzip (bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream('gzip'))
  return new Uint8Array(await new Response(stream).arrayBuffer())
}

// percentiles of a volume's calibrated intensities, from a 4096-bin histogram (exact enough
// for a display window, and one pass over the voxels).
export function percentiles (img, slope, inter, lo, hi) {
  let mn = Infinity
  let mx = -Infinity
  for (let i = 0; i < img.length; i++) {
    const v = img[i]
    if (v < mn) mn = v
    if (v > mx) mx = v
  }
  if (!(mx > mn)) return [mn * slope + inter, mx * slope + inter]
  const nb = 4096
  const hist = new Float64Array(nb)
  const s = (nb - 1) / (mx - mn)
  let n = 0
  for (let i = 0; i < img.length; i++) {
    const v = img[i]
    if (v !== v) continue // NaN
    hist[Math.floor((v - mn) * s)]++
    n++
  }
  const at = (q) => {
    const target = q * n
    let c = 0
    for (let b = 0; b < nb; b++) {
      c += hist[b]
      if (c >= target) return mn + b / s
    }
    return mx
  }
  const a = at(lo) * slope + inter
  const b = at(hi) * slope + inter
  return slope >= 0 ? [a, b] : [b, a]
}
