// Clicks through the page against dev/mock-server.mjs in headless Chromium and checks that a
// drawing reaches the server on the volume's own grid: for phantoms stored in RAS, LPS and LIA
// voxel order (and one sliced coronally) it finds the "liver" on the screenshot, draws a
// filled disc over it, propagates, and reads back the label volume the mock saved: every
// labelled voxel must sit on one slice along slice_axis, at the world position of the slice
// shown, and inside the liver in world coordinates (so any flip or axis swap fails).
//
//   node dev/mock-server.mjs --port 8090 --save /tmp/mocksave &
//   PLAYWRIGHT_CORE=/path/to/node_modules/playwright-core node dev/browser-check.mjs \
//     [--url http://127.0.0.1:8090/] [--save /tmp/mocksave] [--shot ../docs/img/serve-page.png]
//
// playwright-core is not a dependency of web/ (the page needs no test runner); point
// PLAYWRIGHT_CORE at any install of it. Chromium: Debian's /usr/bin/chromium by default.
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { inflateSync } from 'node:zlib'
import { gzipSync } from 'node:zlib'
import { LIVER, PHANTOMS, makePhantom, readNifti } from './mock-server.mjs'

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]])
  return acc
}, []))
const URL_ = args.url || 'http://127.0.0.1:8090/'
const SAVE = args.save || '/tmp/mocksave'
const SHOT = args.shot || ''
const pw = await import(join(process.env.PLAYWRIGHT_CORE || 'playwright-core', 'index.mjs'))
const chromium = pw.chromium || pw.default.chromium

let failures = 0
const check = (ok, what) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`)
  if (!ok) failures++
}

// decodePNG: 8-bit RGB/RGBA, non-interlaced (what Chromium writes for screenshots).
function decodePNG (buf) {
  let off = 8
  let w, h, ctype
  const idat = []
  while (off < buf.length) {
    const len = buf.readUInt32BE(off)
    const type = buf.toString('latin1', off + 4, off + 8)
    const data = buf.subarray(off + 8, off + 8 + len)
    if (type === 'IHDR') { w = data.readUInt32BE(0); h = data.readUInt32BE(4); ctype = data[9]; if (data[8] !== 8 || data[12] !== 0) throw new Error('PNG: want 8-bit, non-interlaced') }
    if (type === 'IDAT') idat.push(data)
    off += 12 + len
  }
  const bpp = ctype === 6 ? 4 : ctype === 2 ? 3 : 0
  if (!bpp) throw new Error(`PNG colour type ${ctype}`)
  const raw = inflateSync(Buffer.concat(idat))
  const stride = w * bpp
  const px = Buffer.alloc(h * stride)
  for (let y = 0; y < h; y++) {
    const f = raw[y * (stride + 1)]
    for (let x = 0; x < stride; x++) {
      const cur = raw[y * (stride + 1) + 1 + x]
      const a = x >= bpp ? px[y * stride + x - bpp] : 0
      const b = y > 0 ? px[(y - 1) * stride + x] : 0
      const c = x >= bpp && y > 0 ? px[(y - 1) * stride + x - bpp] : 0
      let v
      if (f === 0) v = cur
      else if (f === 1) v = cur + a
      else if (f === 2) v = cur + b
      else if (f === 3) v = cur + ((a + b) >> 1)
      else { const p = a + b - c; const pa = Math.abs(p - a); const pb = Math.abs(p - b); const pc = Math.abs(p - c); v = cur + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c) }
      px[y * stride + x] = v & 255
    }
  }
  return { w, h, bpp, px }
}

// findLiver: the liver is the grey of 140 HU in the soft-tissue window (≈191), unlike body
// (30 HU ≈ 121), spine (white), air (black), the red/green crosshair.
function findLiver (png) {
  let n = 0; let sx = 0; let sy = 0
  let x0 = Infinity; let x1 = -1; let y0 = Infinity; let y1 = -1
  for (let y = 0; y < png.h; y++) {
    for (let x = 0; x < png.w; x++) {
      const i = (y * png.w + x) * png.bpp
      const [r, g, b] = [png.px[i], png.px[i + 1], png.px[i + 2]]
      if (Math.abs(r - 191) < 14 && Math.abs(g - r) < 6 && Math.abs(b - r) < 6) {
        n++; sx += x; sy += y
        x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y)
      }
    }
  }
  return n ? { n, cx: sx / n, cy: sy / n, rx: (x1 - x0) / 2, ry: (y1 - y0) / 2 } : null
}

const latestJob = () => {
  const n = readdirSync(SAVE).filter(f => /^job\d+\.json$/.test(f)).map(f => Number(f.slice(3, -5)))
  return Math.max(0, ...n)
}

// verify: the saved label volume against the liver in world space.
function verify (jobN, { label, worldAxis, worldAt, name }) {
  const meta = JSON.parse(readFileSync(join(SAVE, `job${jobN}.json`), 'utf8'))
  const lab = readNifti(readFileSync(join(SAVE, `job${jobN}-labels.nii`)))
  const [nx, ny] = lab.dims
  const A = lab.affine
  const slicesSeen = new Set()
  const labels = new Set()
  let n = 0; let inside = 0; let atSlice = 0
  for (let q = 0; q < lab.data.length; q++) {
    if (!lab.data[q]) continue
    n++
    labels.add(lab.data[q])
    const ijk = [q % nx, Math.floor(q / nx) % ny, Math.floor(q / (nx * ny))]
    slicesSeen.add(ijk[meta.slice_axis])
    const p = [0, 1, 2].map(r => A[r][0] * ijk[0] + A[r][1] * ijk[1] + A[r][2] * ijk[2] + A[r][3])
    const d = [0, 1, 2].map(k => (p[k] - LIVER.centre[k]) / LIVER.radii[k])
    if (d[0] ** 2 + d[1] ** 2 + d[2] ** 2 <= 1.0001) inside++
    if (Math.abs(p[worldAxis] - worldAt) <= 1.3) atSlice++
  }
  console.log(`     ${name}: ${n} labelled voxels, labels [${[...labels]}], array slices [${[...slicesSeen]}] along axis ${meta.slice_axis}, annotated_slices ${JSON.stringify(meta.annotated_slices)}, ${inside} inside the liver`)
  check(n > 30, `${name}: the drawing has voxels (${n})`)
  check(lab.datatype === 2 && lab.dims.join() === meta.dims.join(), `${name}: uint8 on the volume's grid ${meta.dims}`)
  check(slicesSeen.size === 1, `${name}: all on one slice along slice_axis ${meta.slice_axis}`)
  check(atSlice === n, `${name}: at world ${'xyz'[worldAxis]} = ${worldAt} mm (${atSlice}/${n})`)
  check(inside >= 0.97 * n, `${name}: inside the liver in world coordinates (${inside}/${n})`)
  check(labels.size === 1 && labels.has(label), `${name}: label id ${label}`)
  return { meta, n }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
})
const page = await browser.newPage({ viewport: { width: 1280, height: 800 }, acceptDownloads: true })
const consoleErrors = []
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()) })
page.on('pageerror', (e) => consoleErrors.push(String(e)))
// Every API request must carry the token (header, or ?token= for EventSource and downloads).
const unauthorized = []
let sseWithToken = 0
page.on('response', (r) => { if (r.status() === 401) unauthorized.push(r.url()) })
page.on('request', (r) => { if (r.url().includes('/events') && /[?&]token=/.test(r.url())) sseWithToken++ })
await page.goto(URL_)
const waitState = (s, timeout = 60000) => page.waitForFunction((s) => document.body.dataset.state === s, s, { timeout })
await page.waitForFunction(() => window.sli2vol && window.sli2vol.state.session, null, { timeout: 60000 })
check(await page.evaluate(() => document.body.dataset.state) === 'idle', 'page idle with a session after load')
check(await page.locator('#volume-list option').count() === 4, 'volume list from /api/data')

const cases = [
  { name: 'phantom-ras.nii.gz', label: 1, worldAxis: 2, worldAt: 13.75, how: 'mouse' },
  { name: 'phantom-lps.nii.gz', label: 2, worldAxis: 2, worldAt: 13.75, how: 'pointer' },
  { name: 'phantom-lia.nii.gz', label: 3, worldAxis: 2, worldAt: 13.75, how: 'mouse' },
  { name: 'phantom-ras-coronal.nii.gz', label: 4, worldAxis: 1, worldAt: 11.25, how: 'pointer' }
]

async function drawDisc (box, liver, how) {
  const r = 0.55 * Math.min(liver.rx, liver.ry)
  const pts = []
  for (let a = 0; a <= 36; a++) pts.push([liver.cx + r * Math.cos(a / 36 * 2 * Math.PI), liver.cy + r * Math.sin(a / 36 * 2 * Math.PI)])
  if (how === 'mouse') { // trusted input, as a hand or CDP Input.dispatchMouseEvent gives
    await page.mouse.move(box.x + pts[0][0], box.y + pts[0][1])
    await page.mouse.down()
    for (const [x, y] of pts) await page.mouse.move(box.x + x, box.y + y, { steps: 2 })
    await page.mouse.up()
  } else { // synthetic PointerEvents dispatched on the canvas (what a page-script test does)
    await page.evaluate(({ pts, box }) => {
      const c = document.getElementById('canvas')
      const ev = (type, [x, y], buttons) => c.dispatchEvent(new PointerEvent(type, { bubbles: true, clientX: box.x + x, clientY: box.y + y, button: 0, buttons, pointerType: 'mouse', isPrimary: true }))
      ev('pointerdown', pts[0], 1)
      for (const p of pts) ev('pointermove', p, 1)
      ev('pointerup', pts[pts.length - 1], 0)
    }, { pts, box })
  }
  return r
}

let lastCase = null
for (const c of cases) {
  await page.selectOption('#volume-list', c.name)
  await page.click('#open')
  await waitState('ready')
  const vol = await page.evaluate(() => window.sli2vol.state.volume)
  const want = c.worldAxis === 2 ? 'axial' : 'coronal'
  check(vol.plane === want, `${c.name}: plane ${vol.plane}`)
  // Go to the slice through the liver's centre (world), then step with the keys to check they move it.
  await page.evaluate(({ axis, at }) => {
    const nv = window.sli2vol.nv
    const mm = [-25, 12, 15]
    mm[axis] = at - 2 * (axis === 2 ? 2.5 : 1.5) // two slices below the target
    nv.scene.crosshairPos = nv.mm2frac(mm)
    nv.drawScene()
  }, { axis: c.worldAxis, at: c.worldAt })
  await page.keyboard.press('f') // filled pen: switches the view to the drawing plane
  await page.keyboard.press(String(c.label))
  await page.keyboard.press('ArrowUp')
  await page.keyboard.press('ArrowUp')
  const st = await page.evaluate(() => ({ sliceType: window.sli2vol.nv.opts.sliceType, drawing: window.sli2vol.nv.opts.drawingEnabled, pen: window.sli2vol.nv.opts.penValue, filled: window.sli2vol.nv.opts.isFilledPen }))
  check(st.sliceType === (c.worldAxis === 2 ? 0 : 1) && st.drawing && st.pen === c.label && st.filled, `${c.name}: F + ${c.label} → filled pen, label ${c.label}, view ${want}`)
  const mm = await page.evaluate(() => Array.from(window.sli2vol.nv.frac2mm(window.sli2vol.nv.scene.crosshairPos)))
  check(Math.abs(mm[c.worldAxis] - c.worldAt) < 0.01, `${c.name}: ArrowUp×2 reaches world ${'xyz'[c.worldAxis]} = ${c.worldAt} (at ${mm[c.worldAxis].toFixed(2)})`)
  await page.waitForTimeout(300)
  const box = await page.locator('#canvas').boundingBox()
  const png = decodePNG(await page.screenshot({ clip: box }))
  const liver = findLiver(png)
  check(!!liver && liver.n > 200, `${c.name}: liver found on screen (${liver && liver.n} px)`)
  if (!liver) continue
  // The test hooks agree with the screen: the liver's centre voxel (file indices) maps to
  // the middle of the grey blob found on the screenshot.
  const hook = await page.evaluate(({ axis, at }) => {
    const { nv, voxelToClient } = window.sli2vol
    const mm = [-25, 12, 15]
    mm[axis] = at
    const v = nv.volumes[0]
    const inv = (A, p) => { // world → file voxel, by solving the 3×3 system (axis-aligned here)
      const ijk = [0, 0, 0]
      for (let a = 0; a < 3; a++) for (let r = 0; r < 3; r++) if (Math.abs(A[r][a]) > 1e-6) ijk[a] = Math.round((p[r] - A[r][3]) / A[r][a])
      return ijk
    }
    return voxelToClient(inv(v.hdr.affine, mm))
  }, { axis: c.worldAxis, at: c.worldAt })
  const dist = hook ? Math.hypot(hook.x - box.x - liver.cx, hook.y - box.y - liver.cy) : Infinity
  check(dist < 12, `${c.name}: sli2vol.voxelToClient(liver centre) is ${dist.toFixed(1)} px from the liver's centroid on screen`)
  // One click with a 1-voxel pen at voxelToClient(v) labels exactly voxel v of the exported
  // file, for a few voxels around the liver (then undone).
  {
    await page.keyboard.press('d')
    await page.evaluate(() => { window.sli2vol.nv.opts.penSize = 1 })
    const probes = await page.evaluate(() => {
      const { nv, state } = window.sli2vol
      const d = nv.volumes[0].hdr.dims
      // the file voxel under the crosshair, through world coordinates
      const A = nv.volumes[0].hdr.affine
      const mm = Array.from(nv.frac2mm(nv.scene.crosshairPos)).slice(0, 3)
      const ijk = [0, 1, 2].map(a => { for (let r = 0; r < 3; r++) if (Math.abs(A[r][a]) > 1e-6) return Math.round((mm[r] - A[r][3]) / A[r][a]) })
      const sa = state.volume.slice_axis
      const out = []
      for (const [du, dv] of [[0, 0], [7, -5], [-9, 4]]) {
        const p = ijk.slice()
        const inPlane = [0, 1, 2].filter(a => a !== sa)
        p[inPlane[0]] = Math.min(d[inPlane[0] + 1] - 1, Math.max(0, p[inPlane[0]] + du))
        p[inPlane[1]] = Math.min(d[inPlane[1] + 1] - 1, Math.max(0, p[inPlane[1]] + dv))
        out.push(p)
      }
      return out
    })
    let exact = 0
    for (const v of probes) {
      const pt = await page.evaluate((v) => window.sli2vol.voxelToClient(v), v)
      await page.mouse.click(pt.x, pt.y)
      const got = await page.evaluate(async () => {
        const b = await window.sli2vol.exportDrawing()
        const dv = new DataView(b.buffer, b.byteOffset)
        const n = [dv.getInt16(42, true), dv.getInt16(44, true), dv.getInt16(46, true)]
        const off = dv.getFloat32(108, true)
        const hits = []
        for (let q = 0; q < n[0] * n[1] * n[2]; q++) if (b[off + q]) hits.push([q % n[0], Math.floor(q / n[0]) % n[1], Math.floor(q / (n[0] * n[1]))])
        return hits
      })
      await page.keyboard.press('Control+z')
      if (got.length === 1 && got[0].join() === v.join()) exact++
      else console.log(`     click at voxel ${v} labelled ${JSON.stringify(got)}`)
    }
    check(exact === probes.length, `${c.name}: a 1-voxel click at voxelToClient(v) labels exactly v in the export (${exact}/${probes.length})`)
    await page.evaluate((n) => { window.sli2vol.nv.opts.penSize = n }, 3)
    await page.keyboard.press('f')
  }
  const before = latestJob()
  await drawDisc(box, liver, c.how)
  await page.keyboard.press('p')
  await waitState('done')
  const prog = await page.evaluate(() => [document.getElementById('progress').value, document.getElementById('progress').max])
  check(prog[0] === prog[1], `${c.name}: progress bar full (${prog})`)
  const jobN = latestJob()
  check(jobN > before, `${c.name}: a job was sent (the mock saved job${jobN})`)
  verify(jobN, c)
  const maskOK = await page.evaluate(() => {
    const { nv, state } = window.sli2vol
    return nv.volumes.length === 2 && nv.volumes[1] === state.mask && state.mask.img.some(v => v > 0)
  })
  check(maskOK, `${c.name}: mask loaded as an overlay`)
  lastCase = c
}

// Correction: ten slices up, draw again, propagate: both slices go in the next job.
{
  const c = lastCase
  await page.keyboard.press('PageUp')
  await page.waitForTimeout(300)
  const box = await page.locator('#canvas').boundingBox()
  const liver = findLiver(decodePNG(await page.screenshot({ clip: box })))
  await drawDisc(box, liver || { cx: box.width / 2, cy: box.height / 2, rx: 20, ry: 20 }, 'mouse')
  // Undo of a stroke: draw a stray stroke, Ctrl+Z removes it.
  const count = () => page.evaluate(() => window.sli2vol.nv.drawBitmap.reduce((a, v) => a + (v > 0), 0))
  const n0 = await count()
  await page.mouse.move(box.x + 20, box.y + 20); await page.mouse.down(); await page.mouse.move(box.x + 60, box.y + 40, { steps: 5 }); await page.mouse.up()
  const n1 = await count()
  await page.keyboard.press('Control+z')
  const n2 = await count()
  check(n1 > n0 && n2 === n0, `undo removes the last stroke (${n0} → ${n1} → ${n2})`)
  await page.click('#propagate')
  await waitState('done')
  const meta = JSON.parse(readFileSync(join(SAVE, `job${latestJob()}.json`), 'utf8'))
  check(meta.annotated_slices.length === 2, `correction: the next job carries both slices (${meta.annotated_slices})`)
  const href = await page.getAttribute('#download', 'href')
  check(!!href && href.includes('/mask.nii.gz'), `download link ${href}`)
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#download')])
  const mask = readNifti(readFileSync(await dl.path()))
  check(mask.dims.join() === meta.dims.join() && mask.data.some(v => v > 0), `downloaded mask ${dl.suggestedFilename()} on the volume's grid`)
}

// Window presets, eraser, mask → drawing, mask opacity.
{
  const win = async (name) => { await page.click(`#window button[data-window="${name}"]`); return page.evaluate(() => [window.sli2vol.nv.volumes[0].cal_min, window.sli2vol.nv.volumes[0].cal_max]) }
  const soft = await win('soft'); const lung = await win('lung'); const bone = await win('bone'); const mri = await win('mri')
  check(soft.join() === '-160,240' && lung.join() === '-1350,150' && bone.join() === '-500,1300', `CT windows: soft ${soft}, lung ${lung}, bone ${bone}`)
  check(mri[0] <= -999 && mri[1] >= 140 && mri[1] <= 700, `MRI window at the 1st–99th percentile: ${mri.map(v => v.toFixed(0))}`)
  await win('soft')
  const count = () => page.evaluate(() => window.sli2vol.nv.drawBitmap.reduce((a, v) => a + (v > 0), 0))
  const box = await page.locator('#canvas').boundingBox()
  const liver = findLiver(decodePNG(await page.screenshot({ clip: box })))
  const n0 = await count()
  await page.keyboard.press('e')
  await page.mouse.move(box.x + liver.cx - 30, box.y + liver.cy); await page.mouse.down(); await page.mouse.move(box.x + liver.cx + 30, box.y + liver.cy, { steps: 10 }); await page.mouse.up()
  const n1 = await count()
  check(n1 < n0, `eraser removes drawn voxels (${n0} → ${n1})`)
  await page.click('#copy-mask')
  const n2 = await count()
  check(n2 >= n0, `Mask→draw copies the mask on this slice into the drawing (${n1} → ${n2})`)
  await page.$eval('#opacity', (el) => { el.value = '0.2'; el.dispatchEvent(new Event('input')) })
  const op = await page.evaluate(() => window.sli2vol.state.mask.opacity)
  check(Math.abs(op - 0.2) < 1e-6, `mask opacity slider (${op})`)
  for (const l of ['multi', 'axial', 'coronal', 'sagittal', 'render']) await page.click(`#layout button[data-layout="${l}"]`)
  const st = await page.evaluate(() => [window.sli2vol.nv.opts.sliceType, window.sli2vol.nv.opts.drawingEnabled])
  check(st[0] === 4 && st[1] === false, `3D view turns the pen off (sliceType ${st[0]}, drawing ${st[1]})`)
}

// Upload: the LIA phantom as a file from disk, through the file input.
{
  await page.setInputFiles('#upload', { name: 'uploaded-lia.nii.gz', mimeType: 'application/gzip', buffer: gzipSync(makePhantom(PHANTOMS['phantom-lia.nii.gz'].layout)) })
  await waitState('ready')
  const vol = await page.evaluate(() => window.sli2vol.state.volume)
  check(vol.name === 'uploaded-lia.nii.gz' && vol.dims.join() === '96,48,80' && vol.slice_axis === 1, `upload: ${vol.name} ${vol.dims} slice_axis ${vol.slice_axis}`)
}

if (new URL(URL_).searchParams.get('token')) {
  check(unauthorized.length === 0, `no request refused for the token${unauthorized.length ? ': ' + unauthorized.join(' ') : ''}`)
  check(sseWithToken > 0, `the progress stream (EventSource) carried ?token= (${sseWithToken} streams)`)
  // Without the token the page says why, and goes to the error state.
  const p2 = await browser.newPage({ viewport: { width: 1280, height: 800 } })
  const u = new URL(URL_)
  u.searchParams.delete('token')
  await p2.goto(u.toString())
  await p2.waitForFunction(() => document.body.dataset.state === 'error', null, { timeout: 30000 })
  const msg = await p2.textContent('#status')
  check(/token/.test(msg), `without the token: error state, "${msg}"`)
  await p2.close()
}

// Screenshot: the LPS phantom, 4-up with the 3D render, mask overlaid.
if (SHOT) {
  await page.selectOption('#volume-list', 'phantom-lps.nii.gz')
  await page.click('#open')
  await waitState('ready')
  await page.evaluate(() => { const nv = window.sli2vol.nv; nv.scene.crosshairPos = nv.mm2frac([-25, 12, 15]); nv.drawScene() })
  await page.keyboard.press('f')
  await page.keyboard.press('1')
  await page.waitForTimeout(300)
  const box = await page.locator('#canvas').boundingBox()
  const liver = findLiver(decodePNG(await page.screenshot({ clip: box })))
  const r = 0.8 * Math.min(liver.rx, liver.ry)
  await page.mouse.move(box.x + liver.cx + r, box.y + liver.cy); await page.mouse.down()
  for (let a = 0; a <= 48; a++) await page.mouse.move(box.x + liver.cx + r * Math.cos(a / 48 * 2 * Math.PI), box.y + liver.cy + 0.8 * liver.ry / Math.min(liver.rx, liver.ry) * r * Math.sin(a / 48 * 2 * Math.PI))
  await page.mouse.up()
  await page.keyboard.press('p')
  await waitState('done')
  await page.keyboard.press('Escape')
  await page.click('#layout button[data-layout="multi"]')
  await page.evaluate(() => { window.sli2vol.nv.setRenderAzimuthElevation(120, 20) })
  await page.waitForTimeout(500)
  await page.screenshot({ path: SHOT })
  console.log(`screenshot ${SHOT}`)
}

const expected401 = (t) => /status of 401/.test(t)
check(consoleErrors.filter(t => !expected401(t)).length === 0, `no console errors${consoleErrors.length ? ': ' + consoleErrors.join(' | ') : ''}`)
await browser.close()
console.log(failures ? `${failures} check(s) failed` : 'all checks passed')
process.exit(failures ? 1 : 0)
