// The page of `sli2vol serve`: open a volume, draw a label on one (or several) slices in the
// plane the server slices along, propagate it to the whole volume, show and download the mask.
// NiiVue does the viewing and the drawing; this file wires it to the HTTP API (docs/api.md).
import { Niivue, NVImage, SLICE_TYPE, SHOW_RENDER, MULTIPLANAR_TYPE } from '@niivue/niivue'
import { Api } from './api.js'
import { gzip, labelledSlices, percentiles } from './nifti.js'

const $ = (id) => document.getElementById(id)

// Label ids 1..9 (number keys), colours far apart in hue so neighbouring structures stay
// distinguishable on grey CT. Index 0 is transparent: unlabelled.
const LABEL_COLOURS = [
  [0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
  [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60]
]
const N_LABELS = LABEL_COLOURS.length - 1
const labelColormap = () => ({
  R: LABEL_COLOURS.map(c => c[0]),
  G: LABEL_COLOURS.map(c => c[1]),
  B: LABEL_COLOURS.map(c => c[2]),
  A: LABEL_COLOURS.map((_, i) => (i === 0 ? 0 : 255)),
  I: LABEL_COLOURS.map((_, i) => i),
  labels: LABEL_COLOURS.map((_, i) => (i === 0 ? '' : `label ${i}`))
})

const PLANE_SLICE_TYPE = { axial: SLICE_TYPE.AXIAL, coronal: SLICE_TYPE.CORONAL, sagittal: SLICE_TYPE.SAGITTAL }
const LAYOUTS = {
  multi: SLICE_TYPE.MULTIPLANAR,
  axial: SLICE_TYPE.AXIAL,
  coronal: SLICE_TYPE.CORONAL,
  sagittal: SLICE_TYPE.SAGITTAL,
  render: SLICE_TYPE.RENDER
}
// CT windows in Hounsfield units: [width, level].
const CT_WINDOWS = { soft: [400, 40], lung: [1500, -600], bone: [1800, 400] }

const state = {
  token: new URLSearchParams(location.search).get('token') || '',
  info: null,
  session: null,
  volume: null, // the server's answer to open/upload: {volume, name, dims, spacing, slice_axis, plane, slices}
  job: null, // {job, annotated_slices}
  jobState: null,
  mask: null, // NVImage of the last result
  tool: 'none', // none | pen | fill | erase
  label: 1,
  brush: 3,
  layout: 'multi',
  window: null,
  phase: 'idle',
  error: null
}
const api = new Api(state.token)
let nv = null
let events = null // EventSource of the running job
let loadSeq = 0 // drops answers for a volume the user has since replaced

function setPhase (phase, message) {
  state.phase = phase
  document.body.dataset.state = phase
  if (message !== undefined) setStatus(message, phase === 'error')
  updateControls()
}

function setStatus (message, isError = false) {
  const el = $('status')
  el.textContent = message
  el.classList.toggle('error', isError)
}

function fail (err, phase = 'error') {
  console.error(err)
  state.error = err.message || String(err)
  setPhase(phase, state.error)
}

function updateControls () {
  const hasVol = !!state.volume && !!nv && nv.volumes.length > 0
  const busy = state.phase === 'loading'
  const running = state.phase === 'propagating'
  $('open').disabled = busy || !$('volume-list').value || !state.session
  $('upload').disabled = busy || !state.session
  const prop = $('propagate')
  prop.disabled = !hasVol || busy
  prop.textContent = running ? 'Cancel' : 'Propagate'
  prop.classList.toggle('primary', !running)
  for (const b of document.querySelectorAll('#tools button, #undo, #clear, #window button, #layout button')) {
    b.disabled = !hasVol || busy
  }
  const dl = $('download')
  const done = state.jobState === 'done' && state.job
  dl.classList.toggle('disabled', !done)
  dl.setAttribute('aria-disabled', String(!done))
  if (done) {
    dl.href = api.url(`/api/sessions/${state.session}/jobs/${state.job.job}/mask.nii.gz`)
    const base = (state.volume.name || 'volume').replace(/\.(nii(\.gz)?|zip)$/i, '').replace(/[/\\]+$/, '').split(/[/\\]/).pop()
    dl.download = `${base}_mask.nii.gz`
  } else {
    dl.removeAttribute('href')
  }
}

// ---- viewer ------------------------------------------------------------------------------

async function initViewer () {
  nv = new Niivue({
    backColor: [0.08, 0.08, 0.1, 1],
    // translucent white: a red crosshair would hide label 1 while drawing
    crosshairColor: [1, 1, 1, 0.45],
    show3Dcrosshair: true,
    multiplanarShowRender: SHOW_RENDER.ALWAYS,
    multiplanarLayout: MULTIPLANAR_TYPE.GRID,
    dragAndDropEnabled: false, // files go to the server first (its grid is what we draw on)
    isResizeCanvas: true,
    logLevel: 'warn',
    // This page owns the keyboard; NiiVue's own hot keys (V: next view, C/P: clip planes)
    // would clash with P = propagate and switch away from the drawing plane.
    viewModeHotKey: 'sli2vol-none',
    clipPlaneHotKey: 'sli2vol-none',
    cycleClipPlaneHotKey: 'sli2vol-none',
    penSize: state.brush,
    maxDrawUndoBitmaps: 32,
    loadingText: ''
  })
  await nv.attachToCanvas($('canvas'))
  nv.setDrawColormap(labelColormap())
  nv.setDrawOpacity(0.7)
  nv.onLocationChange = (loc) => {
    $('location').textContent = loc && loc.string ? loc.string : ''
  }
  // NiiVue draws from mouse events. Real input (and CDP's Input.dispatchMouseEvent) fires
  // both pointer and mouse events; a script dispatching only PointerEvents (an automated
  // test) gets the matching mouse event here, so it draws the same way a hand does.
  const canvas = $('canvas')
  const bridge = { pointerdown: 'mousedown', pointermove: 'mousemove', pointerup: 'mouseup' }
  for (const [p, m] of Object.entries(bridge)) {
    canvas.addEventListener(p, (e) => {
      if (e.isTrusted) return
      canvas.dispatchEvent(new MouseEvent(m, {
        bubbles: true,
        cancelable: true,
        clientX: e.clientX,
        clientY: e.clientY,
        screenX: e.screenX,
        screenY: e.screenY,
        button: e.button,
        buttons: e.buttons,
        ctrlKey: e.ctrlKey,
        shiftKey: e.shiftKey,
        altKey: e.altKey,
        metaKey: e.metaKey
      }))
    })
  }
  // Finish a stroke when the pointer is released outside the canvas; NiiVue only listens on
  // the canvas and would otherwise keep drawing on the next hover.
  window.addEventListener('mouseup', (e) => {
    if (e.target !== canvas && nv.uiData && nv.uiData.mouseButtonLeftDown) {
      canvas.dispatchEvent(new MouseEvent('mouseup', { bubbles: true, clientX: e.clientX, clientY: e.clientY, button: e.button }))
    }
  })
}

const aPlane = (plane) => (plane === 'axial' ? 'an axial' : `a ${plane}`)
const drawSliceType = () => PLANE_SLICE_TYPE[state.volume?.plane] ?? SLICE_TYPE.AXIAL

function setLayout (name) {
  state.layout = name
  // Drawing happens only on slices of the server's plane; any other view turns the pen off
  // rather than letting a stroke land across many of the server's slices.
  if (state.tool !== 'none' && LAYOUTS[name] !== drawSliceType()) setTool('none', false)
  nv.setSliceType(LAYOUTS[name])
  for (const b of document.querySelectorAll('#layout button')) b.classList.toggle('on', b.dataset.layout === name)
}

function setTool (tool, switchView = true) {
  state.tool = tool
  for (const b of document.querySelectorAll('#tools button')) b.classList.toggle('on', b.dataset.tool === tool)
  if (!nv || !state.volume) return
  if (tool === 'none') {
    nv.setDrawingEnabled(false) // keeps the drawing; only stops strokes
  } else {
    if (switchView) {
      const st = drawSliceType()
      const name = Object.keys(LAYOUTS).find(k => LAYOUTS[k] === st)
      if (nv.opts.sliceType !== st) setLayout(name)
    }
    nv.setDrawingEnabled(true)
    nv.setPenValue(tool === 'erase' ? 0 : state.label, tool === 'fill')
  }
  $('canvas').classList.toggle('drawing', tool !== 'none')
}

function setLabel (id) {
  state.label = id
  for (const b of document.querySelectorAll('#legend button')) {
    const on = Number(b.dataset.label) === id
    b.classList.toggle('on', on)
    b.setAttribute('aria-checked', String(on))
  }
  if (state.tool === 'erase' || state.tool === 'none') setTool('pen')
  else setTool(state.tool)
}

function setBrush (n) {
  state.brush = Math.max(1, Math.min(25, n))
  $('brush').value = String(state.brush)
  $('brush-val').textContent = String(state.brush)
  if (nv) nv.opts.penSize = state.brush
}

function setWindow (name) {
  const vol = nv?.volumes[0]
  if (!vol) return
  let lo, hi
  if (name === 'mri') {
    [lo, hi] = percentiles(vol.img, vol.hdr.scl_slope || 1, vol.hdr.scl_inter || 0, 0.01, 0.99)
  } else {
    const [w, l] = CT_WINDOWS[name]
    lo = l - w / 2
    hi = l + w / 2
  }
  if (!(hi > lo)) hi = lo + 1
  vol.cal_min = lo
  vol.cal_max = hi
  nv.updateGLVolume()
  state.window = name
  for (const b of document.querySelectorAll('#window button')) b.classList.toggle('on', b.dataset.window === name)
}

// moveSlice steps the current view's slice (the drawing plane's in the 4-up and 3D views).
function moveSlice (step) {
  if (!nv?.volumes.length) return
  let st = nv.opts.sliceType
  if (st !== SLICE_TYPE.AXIAL && st !== SLICE_TYPE.CORONAL && st !== SLICE_TYPE.SAGITTAL) st = drawSliceType()
  if (st === SLICE_TYPE.AXIAL) nv.moveCrosshairInVox(0, 0, step)
  else if (st === SLICE_TYPE.CORONAL) nv.moveCrosshairInVox(0, step, 0)
  else nv.moveCrosshairInVox(step, 0, 0)
}

function buildLegend () {
  const el = $('legend')
  el.textContent = ''
  for (let i = 1; i <= N_LABELS; i++) {
    const b = document.createElement('button')
    b.type = 'button'
    b.dataset.label = String(i)
    b.setAttribute('role', 'radio')
    b.title = `label ${i} (key ${i})`
    const [r, g, bl] = LABEL_COLOURS[i]
    b.style.setProperty('--c', `rgb(${r},${g},${bl})`)
    b.textContent = String(i)
    b.addEventListener('click', () => setLabel(i))
    el.appendChild(b)
  }
  setLabel(state.label)
}

// ---- volumes ----------------------------------------------------------------------------

async function cancelJob () {
  if (events) { events.close(); events = null }
  if (state.job && (state.jobState === 'queued' || state.jobState === 'running')) {
    const id = state.job.job
    state.jobState = 'cancelled'
    try { await api.request('DELETE', `/api/sessions/${state.session}/jobs/${id}`) } catch (e) { console.warn(e) }
  }
}

async function showVolume (vol) {
  const seq = ++loadSeq
  setPhase('loading', `Loading ${vol.name}…`)
  document.activeElement?.blur?.() // give the keys back to the page (slices, labels)
  const buf = await api.getBytes(`/api/sessions/${state.session}/volumes/${vol.volume}/image.nii.gz`)
  if (seq !== loadSeq) return
  state.volume = vol
  state.job = null
  state.jobState = null
  state.mask = null
  await nv.loadVolumes([{ url: buf, name: 'image.nii.gz' }])
  // A fresh drawing on this volume's grid (NiiVue keeps it in its RAS-ordered voxel grid and
  // maps it back to the file's own voxel order when exported).
  nv.createEmptyDrawing()
  nv.setDrawColormap(labelColormap())
  const v = nv.volumes[0]
  // CT (air at about −1000 HU) opens in the soft-tissue window, anything else at 1–99 %.
  // (NiiVue's global_min skips the volume's border, where CT's air is.)
  let mn = Infinity
  for (let i = 0; i < v.img.length; i++) if (v.img[i] < mn) mn = v.img[i]
  setWindow(mn * (v.hdr.scl_slope || 1) + (v.hdr.scl_inter || 0) < -500 ? 'soft' : 'mri')
  const [nx, ny, nz] = vol.dims
  const sp = (vol.spacing || []).map(s => +Number(s).toFixed(2)).join(' × ')
  $('volume-info').textContent = `${vol.name}: ${nx} × ${ny} × ${nz} voxels, ${sp} mm`
  $('plane-note').innerHTML = ''
  const b = document.createElement('b')
  b.textContent = vol.plane
  $('plane-note').append('Draw on ', b, ` slices: the model propagates along array axis ${vol.slice_axis} (${vol.slices} slices). The pen switches the view to that plane.`)
  $('progress').value = 0
  $('job-info').textContent = ''
  setTool(state.tool === 'none' ? 'none' : state.tool)
  setLayout(state.tool === 'none' ? state.layout : Object.keys(LAYOUTS).find(k => LAYOUTS[k] === drawSliceType()))
  setPhase('ready', `${vol.name} loaded. Choose Pen (D), draw the structure on ${aPlane(vol.plane)} slice, press Propagate (P).`)
}

async function openListed () {
  const path = $('volume-list').value
  if (!path) return
  try {
    await cancelJob()
    setPhase('loading', `Opening ${path}…`)
    const vol = await api.postJSON(`/api/sessions/${state.session}/volumes/open`, { path })
    await showVolume(vol)
  } catch (e) { fail(e, state.volume ? 'ready' : 'error') }
}

async function upload (file) {
  if (!file) return
  const max = state.info?.max_upload_bytes
  if (max && file.size > max) {
    fail(new Error(`${file.name} is ${(file.size / 1e6).toFixed(1)} MB; the server takes at most ${(max / 1e6).toFixed(1)} MB`), state.volume ? 'ready' : 'idle')
    return
  }
  try {
    await cancelJob()
    setPhase('loading', `Uploading ${file.name}…`)
    const res = await api.request('POST', `/api/sessions/${state.session}/volumes?name=${encodeURIComponent(file.name)}`, { body: file })
    await showVolume(await res.json())
  } catch (e) { fail(e, state.volume ? 'ready' : 'error') }
}

// ---- drawing export and propagation -----------------------------------------------------

// exportDrawing returns the drawing as an uncompressed uint8 NIfTI-1 on the volume's own grid:
// NiiVue's saveImage (isSaveDrawing) writes the background's header (same dims, qform and
// sform) and permutes its RAS-ordered drawing back to the file's voxel order (ImageWriter's
// toUint8Array in the pinned version), so the server sees the voxels where they were drawn.
async function exportDrawing () {
  const out = await nv.saveImage({ filename: '', isSaveDrawing: true, volumeByIndex: 0 })
  if (!(out instanceof Uint8Array)) throw new Error('nothing to export: open a volume and draw first')
  return out
}

async function propagate () {
  if (state.phase === 'propagating') { // the button reads "Cancel" while a job runs
    await cancelJob()
    setPhase('ready', 'Cancelled.')
    return
  }
  if (!state.volume || state.phase === 'loading') return
  try {
    const nii = await exportDrawing()
    const marked = labelledSlices(nii, state.volume.slice_axis)
    if (marked.count === 0) {
      setStatus(`Nothing drawn yet: choose Pen (D) and outline the structure on ${aPlane(state.volume.plane)} slice.`, true)
      return
    }
    await cancelJob()
    setPhase('propagating', `Sending ${marked.count} labelled voxels on ${marked.slices.length} slice(s)…`)
    $('progress').removeAttribute('value') // indeterminate until the first progress event
    const body = await gzip(nii)
    const res = await api.request('POST', `/api/sessions/${state.session}/volumes/${state.volume.volume}/jobs`, { body })
    state.job = await res.json()
    state.jobState = 'queued'
    const annotated = state.job.annotated_slices || []
    $('job-info').textContent = `Annotated slice${annotated.length === 1 ? '' : 's'} ${annotated.join(', ')} (labels ${marked.labels.join(', ')})`
    setStatus('Queued…')
    follow(state.job.job)
  } catch (e) { fail(e) }
}

function follow (jobId) {
  const path = `/api/sessions/${state.session}/jobs/${jobId}`
  const current = () => state.job && state.job.job === jobId
  const onProgress = (d) => {
    if (!current()) return
    state.jobState = d.state || 'running'
    if (d.total > 0) {
      $('progress').max = d.total
      $('progress').value = d.done
      setStatus(`Propagating: ${d.done} / ${d.total} slices`)
    } else {
      setStatus(d.state === 'queued' ? 'Queued…' : 'Propagating…')
    }
  }
  const onDone = (d) => {
    if (!current()) return
    state.jobState = 'done'
    $('progress').max = 1
    $('progress').value = 1
    loadMask(jobId, d).catch(fail)
  }
  const onFailed = (d) => {
    if (!current()) return
    state.jobState = 'failed'
    $('progress').value = 0
    fail(new Error(`propagation failed: ${d.error || 'unknown error'}`))
  }
  const onCancelled = () => {
    if (!current()) return
    state.jobState = 'cancelled'
    setPhase('ready', 'The job was cancelled.')
  }
  const handlers = { progress: onProgress, done: onDone, failed: onFailed, cancelled: onCancelled }
  const es = new EventSource(api.url(`${path}/events`))
  events = es
  for (const [name, fn] of Object.entries(handlers)) {
    es.addEventListener(name, (ev) => {
      let d = {}
      try { d = JSON.parse(ev.data || '{}') } catch {}
      // The stream ends after a final event; closing here stops EventSource from reconnecting.
      if (name !== 'progress') { es.close(); if (events === es) events = null }
      fn(d)
    })
  }
  // A broken stream (proxy timeout, server restart): poll the job's state instead.
  es.onerror = () => {
    if (es.readyState !== EventSource.CLOSED) return
    if (events === es) events = null
    if (!current() || ['done', 'failed', 'cancelled'].includes(state.jobState)) return
    const poll = async () => {
      if (!current()) return
      try {
        const j = await api.getJSON(path)
        if (j.state === 'done') return onDone(j)
        if (j.state === 'failed') return onFailed(j)
        if (j.state === 'cancelled') return onCancelled()
        onProgress(j)
      } catch (e) { return fail(e) }
      setTimeout(poll, 1000)
    }
    poll()
  }
}

async function loadMask (jobId, d) {
  setStatus('Loading the mask…')
  const buf = await api.getBytes(`/api/sessions/${state.session}/jobs/${jobId}/mask.nii.gz`)
  if (!state.job || state.job.job !== jobId) return
  const mask = await NVImage.loadFromUrl({ url: buf, name: 'mask.nii.gz', opacity: Number($('opacity').value) })
  mask.setColormapLabel(labelColormap())
  if (state.mask) nv.removeVolume(state.mask)
  state.mask = mask
  nv.addVolume(mask)
  nv.updateGLVolume()
  const range = d && d.first !== undefined ? ` (slices ${d.first}–${d.last})` : ''
  setPhase('done', `Done${range}. Correct any ${state.volume.plane} slice by drawing on it and propagate again; Download saves the mask.`)
}

// copyMaskSlice puts the mask's labels on the current drawing-plane slice into the drawing,
// so a correction starts from the result instead of a blank slice.
function copyMaskSlice () {
  const m = state.mask
  if (!m || !nv.drawBitmap) return
  const dims = nv.back.dimsRAS
  const step = m.img2RASstep
  const start = m.img2RASstart
  const vox = nv.frac2vox(nv.scene.crosshairPos)
  const st = drawSliceType()
  const axis = st === SLICE_TYPE.AXIAL ? 2 : st === SLICE_TYPE.CORONAL ? 1 : 0
  const at = Math.round(vox[axis])
  const lo = [0, 0, 0]
  const hi = [dims[1], dims[2], dims[3]]
  lo[axis] = at
  hi[axis] = at + 1
  let n = 0
  for (let z = lo[2]; z < hi[2]; z++) {
    for (let y = lo[1]; y < hi[1]; y++) {
      for (let x = lo[0]; x < hi[0]; x++) {
        const native = start[0] + x * step[0] + start[1] + y * step[1] + start[2] + z * step[2]
        const v = m.img[native]
        if (v > 0 && v <= 255) {
          nv.drawBitmap[x + y * dims[1] + z * dims[1] * dims[2]] = v
          n++
        }
      }
    }
  }
  nv.drawAddUndoBitmap()
  nv.refreshDrawing(true)
  setStatus(n ? `Copied ${n} mask voxels into the drawing on this slice: erase or add, then propagate.` : 'The mask is empty on this slice.')
}

// ---- wiring ------------------------------------------------------------------------------

function bindUI () {
  $('volume-list').addEventListener('change', updateControls)
  $('volume-list').addEventListener('dblclick', openListed)
  $('open').addEventListener('click', openListed)
  $('upload').addEventListener('change', (e) => { upload(e.target.files[0]); e.target.value = '' })
  for (const b of document.querySelectorAll('#layout button')) b.addEventListener('click', () => setLayout(b.dataset.layout))
  for (const b of document.querySelectorAll('#window button')) b.addEventListener('click', () => setWindow(b.dataset.window))
  for (const b of document.querySelectorAll('#tools button')) b.addEventListener('click', () => setTool(b.dataset.tool))
  $('brush').addEventListener('input', (e) => setBrush(Number(e.target.value)))
  $('undo').addEventListener('click', () => nv.drawUndo())
  $('clear').addEventListener('click', () => {
    nv.createEmptyDrawing()
    setTool(state.tool)
  })
  $('copy-mask').addEventListener('click', copyMaskSlice)
  $('propagate').addEventListener('click', propagate)
  $('opacity').addEventListener('input', (e) => {
    if (state.mask) {
      const i = nv.volumes.indexOf(state.mask)
      if (i > 0) nv.setOpacity(i, Number(e.target.value))
    }
  })
  $('download').addEventListener('click', (e) => { if (!$('download').href) e.preventDefault() })
  document.addEventListener('keydown', onKey)
  // Closing the page frees the session's volumes and cancels its jobs on the server.
  window.addEventListener('pagehide', () => {
    if (state.session) api.request('DELETE', `/api/sessions/${state.session}`, { keepalive: true }).catch(() => {})
  })
}

function onKey (e) {
  // Keys typed into a form control belong to it (arrows move a slider or the volume list).
  const tag = e.target?.tagName
  if ((tag === 'INPUT' || tag === 'SELECT' || tag === 'TEXTAREA') && e.key !== 'Escape') return
  if (!nv?.volumes.length) return
  const k = e.key
  if ((e.ctrlKey || e.metaKey) && (k === 'z' || k === 'Z')) {
    nv.drawUndo()
  } else if (e.ctrlKey || e.metaKey || e.altKey) {
    return
  } else if (k === 'ArrowUp' || k === 'PageUp') {
    moveSlice(k === 'PageUp' ? 10 : 1)
  } else if (k === 'ArrowDown' || k === 'PageDown') {
    moveSlice(k === 'PageDown' ? -10 : -1)
  } else if (k >= '1' && k <= '9') {
    setLabel(Number(k))
  } else if (k === '+' || k === '=' || k === ']') {
    setBrush(state.brush + 2) // odd sizes: NiiVue's square brush is 2·⌊n/2⌋+1 wide
  } else if (k === '-' || k === '_' || k === '[') {
    setBrush(state.brush - 2)
  } else if (k === 'p' || k === 'P') {
    propagate()
  } else if (k === 'd' || k === 'D') {
    setTool('pen')
  } else if (k === 'f' || k === 'F') {
    setTool('fill')
  } else if (k === 'e' || k === 'E') {
    setTool('erase')
  } else if (k === 'm' || k === 'M') {
    copyMaskSlice()
  } else if (k === 'Escape') {
    setTool('none')
  } else {
    return
  }
  e.preventDefault()
  e.stopPropagation()
}

// ---- test hooks --------------------------------------------------------------------------
// For a browser test that knows the truth in the file's own voxel indices (i, j, k as stored)
// and wants to draw there with pointer events: where a voxel is, in world mm and on screen.

function voxelToWorld (ijk) {
  const A = nv.volumes[0].hdr.affine
  return [0, 1, 2].map(r => A[r][0] * ijk[0] + A[r][1] * ijk[1] + A[r][2] * ijk[2] + A[r][3])
}

// goToVoxel puts the crosshair on voxel ijk, so the 2D views show the slices through it.
function goToVoxel (ijk) {
  nv.scene.crosshairPos = nv.mm2frac(voxelToWorld(ijk))
  nv.drawScene()
}

// voxelToClient: the voxel's centre in client (CSS) pixels in the current 2D view, or null
// when the view does not show it (another slice, the 3D render).
function voxelToClient (ijk) {
  const pos = nv.frac2canvasPos(nv.mm2frac(voxelToWorld(ijk)))
  if (!pos) return null
  const r = $('canvas').getBoundingClientRect()
  const dpr = nv.uiData.dpr || window.devicePixelRatio || 1
  return { x: r.left + pos[0] / dpr, y: r.top + pos[1] / dpr }
}

async function main () {
  setPhase('idle', 'Connecting…')
  bindUI()
  buildLegend()
  setBrush(state.brush)
  window.sli2vol = { nv: null, state, api, exportDrawing, goToVoxel, voxelToClient, voxelToWorld }
  try {
    await initViewer()
    window.sli2vol.nv = nv
    state.info = await api.getJSON('/api/info')
    const i = state.info
    $('model-info').textContent = `${i.version || ''} · ${i.mode || ''} · model ${i.model || '?'} · ${i.device || ''}`
    const data = await api.getJSON('/api/data')
    const list = $('volume-list')
    for (const p of data.volumes || []) {
      const o = document.createElement('option')
      o.value = p
      o.textContent = p
      list.appendChild(o)
    }
    if (list.options.length) list.selectedIndex = 0
    else list.classList.add('empty')
    const s = await api.postJSON('/api/sessions', {})
    state.session = s.session
    setPhase('idle', list.options.length ? 'Open a volume from the list or upload one (.nii, .nii.gz, .zip of a DICOM series).' : 'Upload a volume (.nii, .nii.gz, .zip of a DICOM series).')
  } catch (e) {
    fail(e)
  }
}

main()
