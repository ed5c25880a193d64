// A stand-in for `sli2vol serve` to work on the page without Go, libtorch or a model: serves
// serve/webui/dist and implements docs/api.md with canned answers. Its "propagation" copies
// each annotated slice to the slices around it (nearest annotation wins), enough to see a
// mask in every plane and in 3D; it also checks the label volume the way the server does
// (same dims, affine within 1e-3) and can keep every upload (--save DIR) for inspection.
//
//   node dev/mock-server.mjs [--port 8090] [--token T] [--save DIR] [--job-ms 1500]
//
// Volumes offered under /api/data: synthetic CT phantoms (int16 HU) of one box of anatomy
// in world space, stored in different voxel orders, so a drawing exported in the wrong order
// lands outside the structure: RAS, LPS (DICOM order), LIA (FreeSurfer order: superior–inferior
// is the second array axis) and one the mock slices coronally.
import { createServer } from 'node:http'
import { randomBytes } from 'node:crypto'
import { gunzipSync, gzipSync } from 'node:zlib'
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs'
import { dirname, join, normalize, extname } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1] && !all[i + 1].startsWith('--') ? all[i + 1] : 'true'])
  return acc
}, []))
const PORT = Number(args.port || 8090)
const TOKEN = args.token || ''
const SAVE = args.save || ''
const JOB_MS = Number(args['job-ms'] || 1500)
const DIST = args.dist || join(here, '..', '..', 'serve', 'webui', 'dist')
if (SAVE) mkdirSync(SAVE, { recursive: true })

// ---- NIfTI-1 ----------------------------------------------------------------------------

const DT = { 2: [Uint8Array, 8], 4: [Int16Array, 16], 8: [Int32Array, 32], 16: [Float32Array, 32], 512: [Uint16Array, 16] }

export function writeNifti ({ dims, affine, data, datatype }) {
  const [Ctor, bitpix] = DT[datatype]
  const buf = Buffer.alloc(352 + data.length * (bitpix / 8))
  buf.writeInt32LE(348, 0)
  buf.writeInt16LE(3, 40)
  dims.forEach((d, i) => buf.writeInt16LE(d, 42 + 2 * i))
  for (let i = 3; i < 7; i++) buf.writeInt16LE(1, 42 + 2 * i)
  buf.writeInt16LE(datatype, 70)
  buf.writeInt16LE(bitpix, 72)
  buf.writeFloatLE(1, 76) // qfac
  for (let a = 0; a < 3; a++) {
    const c = [affine[0][a], affine[1][a], affine[2][a]]
    buf.writeFloatLE(Math.hypot(...c), 80 + 4 * a)
  }
  buf.writeFloatLE(352, 108)
  buf.writeFloatLE(1, 112) // scl_slope
  buf.writeUInt8(10, 123) // mm, s
  buf.writeInt16LE(0, 252) // qform_code: the sform says it all
  buf.writeInt16LE(1, 254) // sform_code scanner
  for (let r = 0; r < 3; r++) for (let c = 0; c < 4; c++) buf.writeFloatLE(affine[r][c], 280 + 16 * r + 4 * c)
  buf.write('n+1\0', 344, 'latin1')
  const out = new Ctor(buf.buffer, buf.byteOffset + 352, data.length)
  out.set(data)
  return buf
}

export function readNifti (bytes) {
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = gunzipSync(bytes)
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (b.length < 352 || b.readInt32LE(0) !== 348) throw new Error('not a little-endian NIfTI-1 file')
  const dims = [b.readInt16LE(42), b.readInt16LE(44), b.readInt16LE(46)]
  const datatype = b.readInt16LE(70)
  const voxOffset = Math.round(b.readFloatLE(108))
  if (!DT[datatype]) throw new Error(`datatype ${datatype} not supported by the mock`)
  const [Ctor, bitpix] = DT[datatype]
  const n = dims[0] * dims[1] * dims[2]
  if (b.length < voxOffset + n * bitpix / 8) throw new Error('truncated NIfTI')
  const copy = Buffer.from(b.subarray(voxOffset, voxOffset + n * bitpix / 8))
  const data = new Ctor(copy.buffer, copy.byteOffset, n)
  const slope = b.readFloatLE(112) || 1
  const inter = b.readFloatLE(116)
  const affine = [0, 1, 2].map(r => [0, 1, 2, 3].map(c => b.readFloatLE(280 + 16 * r + 4 * c)))
  affine.push([0, 0, 0, 1])
  const sform = b.readInt16LE(254)
  return { dims, datatype, data, affine, sform, qform: b.readInt16LE(252), slope, inter, bytes: b }
}

// ---- phantoms ----------------------------------------------------------------------------

// World box (RAS mm) and spacing per world axis; the phantom is defined in world space.
const EXTENT = [144, 120, 120]
const SPACING = [1.5, 1.5, 2.5]
const WORLD_N = EXTENT.map((e, w) => Math.round(e / SPACING[w])) // 96, 80, 48

// The phantom: air, a body ellipse, a "liver" ellipsoid off-centre in x, y and z (RAS: to the
// left, anterior, superior; so left/right, front/back and up/down flips all miss it), a "spine".
export function phantomValue (x, y, z) {
  const inBody = (x / 65) ** 2 + (y / 50) ** 2 <= 1 && Math.abs(z) < 58
  if (!inBody) return -1000
  if (((x + 25) / 28) ** 2 + ((y - 12) / 20) ** 2 + ((z - 15) / 30) ** 2 <= 1) return 140 // liver
  if ((x / 9) ** 2 + ((y + 35) / 9) ** 2 <= 1) return 700 // spine
  return 30
}
export const LIVER = { centre: [-25, 12, 15], radii: [28, 20, 30] }

// layout: for each array axis, [world axis, sign].
export function makePhantom (layout) {
  const dims = layout.map(([w]) => WORLD_N[w])
  const affine = [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
  layout.forEach(([w, s], a) => {
    affine[w][a] = s * SPACING[w]
    // the voxel centre at index 0 sits at the box's low end for +, high end for −
    affine[w][3] = s > 0 ? -EXTENT[w] / 2 + SPACING[w] / 2 : EXTENT[w] / 2 - SPACING[w] / 2
  })
  const data = new Int16Array(dims[0] * dims[1] * dims[2])
  let v = 0
  for (let k = 0; k < dims[2]; k++) {
    for (let j = 0; j < dims[1]; j++) {
      for (let i = 0; i < dims[0]; i++) {
        const ijk = [i, j, k]
        const p = [0, 1, 2].map(r => affine[r][0] * ijk[0] + affine[r][1] * ijk[1] + affine[r][2] * ijk[2] + affine[r][3])
        data[v++] = phantomValue(...p)
      }
    }
  }
  return writeNifti({ dims, affine, data, datatype: 4 })
}

export const PHANTOMS = {
  'phantom-ras.nii.gz': { layout: [[0, 1], [1, 1], [2, 1]] },
  'phantom-lps.nii.gz': { layout: [[0, -1], [1, -1], [2, 1]] },
  'phantom-lia.nii.gz': { layout: [[0, -1], [2, -1], [1, 1]] },
  'phantom-ras-coronal.nii.gz': { layout: [[0, 1], [1, 1], [2, 1]], sliceWorld: 1 }
}

// ---- geometry like the server's data.Slicer ----------------------------------------------

const PLANES = ['sagittal', 'coronal', 'axial'] // slices across world x, y, z
function worldAxisOf (affine, a) {
  const c = [0, 1, 2].map(r => Math.abs(affine[r][a]))
  return c.indexOf(Math.max(...c))
}
function sliceGeometry (nii, sliceWorld = 2) {
  let axis = 0
  for (let a = 0; a < 3; a++) if (worldAxisOf(nii.affine, a) === sliceWorld) axis = a
  // anatomical slice 0 is the most inferior (posterior / left for other planes)
  const reversed = nii.affine[sliceWorld][axis] < 0
  return { axis, reversed, plane: PLANES[sliceWorld], slices: nii.dims[axis] }
}

// ---- sessions, volumes, jobs -------------------------------------------------------------

const sessions = new Map()
const id = () => randomBytes(16).toString('hex')
let jobCounter = 0

function addVolume (sess, name, bytes, sliceWorld) {
  const nii = readNifti(bytes)
  const g = sliceGeometry(nii, sliceWorld)
  const vid = id()
  const spacing = [0, 1, 2].map(a => +Math.hypot(nii.affine[0][a], nii.affine[1][a], nii.affine[2][a]).toFixed(4))
  const vol = { vid, name, nii, g, gz: gzipSync(Buffer.from(nii.bytes)) }
  sess.volumes.set(vid, vol)
  return { volume: vid, name, dims: nii.dims, spacing, slice_axis: g.axis, plane: g.plane, slices: g.slices }
}

function startJob (sess, vol, body) {
  const lab = readNifti(body)
  const v = vol.nii
  if (lab.dims.join() !== v.dims.join()) throw httpError(400, `label volume dims ${lab.dims} differ from the volume's ${v.dims}`)
  for (let r = 0; r < 3; r++) {
    for (let c = 0; c < 4; c++) {
      if (Math.abs(lab.affine[r][c] - v.affine[r][c]) > 1e-3) throw httpError(400, `label affine differs from the volume's at [${r}][${c}]: ${lab.affine[r][c]} vs ${v.affine[r][c]}`)
    }
  }
  const { axis, reversed, slices } = vol.g
  const [nx, ny] = v.dims
  const sliceOf = (idx) => { const i = idx % nx; const j = Math.floor(idx / nx) % ny; const k = Math.floor(idx / (nx * ny)); return [i, j, k][axis] }
  const marked = new Set()
  for (let q = 0; q < lab.data.length; q++) if (lab.data[q] * lab.slope + lab.inter !== 0) marked.add(sliceOf(q))
  if (marked.size === 0) throw httpError(400, 'the label volume is empty: draw on a slice first')
  const arrayIdx = [...marked].sort((a, b) => a - b)
  const anatomical = arrayIdx.map(a => reversed ? slices - 1 - a : a).sort((a, b) => a - b)
  // "propagate": each slice within ±8 of an annotated one takes its nearest annotation.
  const mask = new Int16Array(lab.data.length)
  const reach = 8
  for (let q = 0; q < mask.length; q++) {
    const s = sliceOf(q)
    let best = -1
    for (const a of arrayIdx) if (Math.abs(a - s) <= reach && (best < 0 || Math.abs(a - s) < Math.abs(best - s))) best = a
    if (best < 0) continue
    const stride = axis === 0 ? 1 : axis === 1 ? nx : nx * ny
    mask[q] = lab.data[q + (best - s) * stride] // the same in-plane voxel on slice best
  }
  const jid = id()
  const n = ++jobCounter
  if (SAVE) {
    writeFileSync(join(SAVE, `job${n}-labels.nii`), Buffer.from(lab.bytes))
    writeFileSync(join(SAVE, `job${n}.json`), JSON.stringify({ volume: vol.name, dims: v.dims, affine: v.affine, slice_axis: axis, reversed, annotated_array: arrayIdx, annotated_slices: anatomical }, null, 1))
  }
  const lo = Math.max(0, Math.min(...anatomical) - reach)
  const hi = Math.min(slices - 1, Math.max(...anatomical) + reach)
  const job = { jid, state: 'queued', done: 0, total: hi - lo + 1 - anatomical.length, first: lo, last: hi, error: '', listeners: new Set(), vol }
  job.mask = gzipSync(writeNifti({ dims: v.dims, affine: v.affine, data: mask, datatype: 4 }))
  sess.jobs.set(jid, job)
  const t0 = Date.now()
  job.timer = setInterval(() => {
    const frac = Math.min(1, (Date.now() - t0) / JOB_MS)
    job.state = frac < 0.1 ? 'queued' : 'running'
    job.done = job.state === 'queued' ? 0 : Math.round(frac * job.total)
    if (frac >= 1) {
      clearInterval(job.timer)
      job.state = 'done'
      emit(job, 'done', { first: job.first, last: job.last })
    } else {
      emit(job, 'progress', { state: job.state, done: job.done, total: job.total })
    }
  }, 100)
  return { job: jid, annotated_slices: anatomical }
}

function emit (job, event, data) {
  for (const res of job.listeners) {
    res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
    if (event !== 'progress') res.end()
  }
  if (event !== 'progress') job.listeners.clear()
}

// ---- HTTP --------------------------------------------------------------------------------

function httpError (status, message) { const e = new Error(message); e.status = status; return e }
const readBody = (req) => new Promise((resolve, reject) => {
  const parts = []
  req.on('data', (c) => parts.push(c))
  req.on('end', () => resolve(Buffer.concat(parts)))
  req.on('error', reject)
})
function json (res, status, obj) {
  res.writeHead(status, { 'Content-Type': 'application/json' })
  res.end(JSON.stringify(obj))
}
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.json': 'application/json' }

async function handle (req, res) {
  const url = new URL(req.url, 'http://x')
  const p = url.pathname
  // The page and its assets are public (a <script src> cannot carry a header); the API is not.
  if (req.method === 'GET' && (p === '/' || p.startsWith('/assets/'))) {
    const name = p === '/' ? 'index.html' : normalize(p.slice('/assets/'.length)).replace(/^(\.\.[/\\])+/, '')
    const f = join(DIST, name)
    if (!existsSync(f)) return json(res, 404, { error: 'no such file' })
    res.writeHead(200, { 'Content-Type': TYPES[extname(f)] || 'application/octet-stream', 'Cache-Control': 'no-cache' })
    return res.end(readFileSync(f))
  }
  if (!p.startsWith('/api/')) return json(res, 404, { error: 'not found' })
  if (TOKEN) {
    const auth = req.headers.authorization || ''
    if (auth !== `Bearer ${TOKEN}` && url.searchParams.get('token') !== TOKEN) return json(res, 401, { error: 'missing or wrong token' })
  }
  const m = (re) => p.match(re)
  let r
  if (req.method === 'GET' && p === '/api/info') {
    return json(res, 200, { version: 'mock', model: 'mock-phantom-run', mode: 'sli2vol+', device: 'cpu', has_data: true, max_upload_bytes: 512 << 20, max_voxels: 512 * 512 * 1000 })
  }
  if (req.method === 'GET' && p === '/api/data') return json(res, 200, { volumes: Object.keys(PHANTOMS) })
  if (req.method === 'POST' && p === '/api/sessions') {
    const sid = id()
    sessions.set(sid, { volumes: new Map(), jobs: new Map() })
    return json(res, 201, { session: sid, expires_in_s: 3600 })
  }
  if ((r = m(/^\/api\/sessions\/([0-9a-f]+)(\/.*)?$/))) {
    const sess = sessions.get(r[1])
    if (!sess) return json(res, 404, { error: 'no such session (expired?)' })
    const rest = r[2] || ''
    if (req.method === 'DELETE' && rest === '') {
      for (const j of sess.jobs.values()) clearInterval(j.timer)
      sessions.delete(r[1])
      res.writeHead(204)
      return res.end()
    }
    if (req.method === 'POST' && rest === '/volumes') {
      const name = url.searchParams.get('name') || 'upload.nii'
      if (/\.zip$/i.test(name)) return json(res, 400, { error: 'the mock reads no DICOM zips' })
      return json(res, 201, addVolume(sess, name, await readBody(req)))
    }
    if (req.method === 'POST' && rest === '/volumes/open') {
      const { path } = JSON.parse((await readBody(req)).toString() || '{}')
      const ph = PHANTOMS[path]
      if (!ph) return json(res, 404, { error: `no volume ${path} under --data` })
      ph.bytes ||= makePhantom(ph.layout)
      return json(res, 201, addVolume(sess, path, ph.bytes, ph.sliceWorld))
    }
    if ((r = rest.match(/^\/volumes\/([0-9a-f]+)\/(image\.nii\.gz|jobs)$/))) {
      const vol = sess.volumes.get(r[1])
      if (!vol) return json(res, 404, { error: 'no such volume' })
      if (req.method === 'GET' && r[2] === 'image.nii.gz') {
        res.writeHead(200, { 'Content-Type': 'application/gzip' })
        return res.end(vol.gz)
      }
      if (req.method === 'POST' && r[2] === 'jobs') return json(res, 202, startJob(sess, vol, await readBody(req)))
    }
    if ((r = rest.match(/^\/jobs\/([0-9a-f]+)(\/events|\/mask\.nii\.gz)?$/))) {
      const job = sess.jobs.get(r[1])
      if (!job) return json(res, 404, { error: 'no such job' })
      const what = r[2] || ''
      if (req.method === 'GET' && what === '') return json(res, 200, { state: job.state, done: job.done, total: job.total, first: job.first, last: job.last, error: job.error })
      if (req.method === 'DELETE' && what === '') {
        if (job.state === 'queued' || job.state === 'running') {
          clearInterval(job.timer)
          job.state = 'cancelled'
          emit(job, 'cancelled', {})
        }
        res.writeHead(204)
        return res.end()
      }
      if (req.method === 'GET' && what === '/events') {
        res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' })
        if (job.state === 'done') return res.end(`event: done\ndata: ${JSON.stringify({ first: job.first, last: job.last })}\n\n`)
        if (job.state === 'cancelled') return res.end('event: cancelled\ndata: {}\n\n')
        if (job.state === 'failed') return res.end(`event: failed\ndata: ${JSON.stringify({ error: job.error })}\n\n`)
        res.write(`event: progress\ndata: ${JSON.stringify({ state: job.state, done: job.done, total: job.total })}\n\n`)
        job.listeners.add(res)
        req.on('close', () => job.listeners.delete(res))
        return
      }
      if (req.method === 'GET' && what === '/mask.nii.gz') {
        if (job.state !== 'done') return json(res, 409, { error: `job is ${job.state}` })
        res.writeHead(200, { 'Content-Type': 'application/gzip', 'Content-Disposition': 'attachment; filename="mask.nii.gz"' })
        return res.end(job.mask)
      }
    }
  }
  return json(res, 404, { error: `no route ${req.method} ${p}` })
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  createServer((req, res) => {
    handle(req, res).catch((e) => {
      if (!res.headersSent) json(res, e.status || 400, { error: e.message.split('\n')[0] })
      else res.end()
    })
  }).listen(PORT, '127.0.0.1', () => {
    console.log(`mock sli2vol serve on http://127.0.0.1:${PORT}/${TOKEN ? `?token=${TOKEN}` : ''}`)
  })
}
