// Builds the page of `sli2vol serve` into ../serve/webui/dist (embedded by serve/webui/webui.go)
// and writes PROVENANCE.json beside it. Reproducible: fixed esbuild options, no timestamps, no
// source maps (they would carry absolute paths), sorted keys; building twice gives the same
// bytes. Run through `make web` (npm ci first, so node_modules matches package-lock.json).
import { build } from 'esbuild'
import { createHash } from 'node:crypto'
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const src = join(here, 'src')
const out = join(here, '..', 'serve', 'webui', 'dist')

const sha256 = (buf) => createHash('sha256').update(buf).digest('hex')

async function listFiles (dir) {
  const out = []
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...await listFiles(p))
    else out.push(p)
  }
  return out.sort()
}

// NiiVue reads OME-Zarr through zarrita, which imports numcodecs' WebAssembly codecs (blosc,
// lz4, zstd: 1.4 MB, more than NiiVue itself) on first use. This page only loads NIfTI from
// the server, so those three modules become stubs that fail loudly if ever reached.
const noZarrCodecs = {
  name: 'no-zarr-codecs',
  setup (b) {
    b.onResolve({ filter: /^numcodecs\/(blosc|lz4|zstd)$/ }, (a) => ({ path: a.path, namespace: 'stub' }))
    b.onLoad({ filter: /.*/, namespace: 'stub' }, (a) => ({
      contents: `export default { fromConfig () { throw new Error(${JSON.stringify(a.path + ' is not part of the sli2vol page (Zarr is not supported)')}) } }`,
      loader: 'js'
    }))
  }
}

await rm(out, { recursive: true, force: true })
await mkdir(out, { recursive: true })

// One JS bundle and one CSS file; index.html is copied as is and names them with relative
// paths, so the server can mount the page anywhere (/ and /assets/...).
const result = await build({
  entryPoints: { app: join(src, 'app.js'), 'app-style': join(src, 'style.css') },
  outdir: out,
  bundle: true,
  format: 'esm',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  minify: true,
  legalComments: 'none',
  sourcemap: false,
  metafile: true,
  charset: 'utf8',
  logLevel: 'warning',
  // NiiVue's optional loaders (zarr over HTTP, web workers) are dynamic imports of modules it
  // bundles itself; keep everything in one file so the Go side serves exactly three files.
  splitting: false,
  define: { 'process.env.NODE_ENV': '"production"' },
  plugins: [noZarrCodecs],
  write: false
})
for (const f of result.outputFiles) {
  // esbuild names the CSS entry app-style.css; the page wants app.css.
  const name = relative(out, f.path).replace(/^app-style\.css$/, 'app.css')
  await writeFile(join(out, name), f.contents)
}
await writeFile(join(out, 'index.html'), await readFile(join(src, 'index.html')))

const lock = await readFile(join(here, 'package-lock.json'))
const lockJSON = JSON.parse(lock)
const pkgVersion = (name) => lockJSON.packages[`node_modules/${name}`].version
const sources = {}
for (const p of [join(here, 'package.json'), join(here, 'build.mjs'), ...await listFiles(src)]) {
  sources[relative(here, p).split('\\').join('/')] = sha256(await readFile(p))
}
const outputs = {}
for (const p of await listFiles(out)) {
  outputs[relative(out, p).split('\\').join('/')] = sha256(await readFile(p))
}
const provenance = {
  builder: 'web/build.mjs (make web)',
  esbuild: pkgVersion('esbuild'),
  niivue: pkgVersion('@niivue/niivue'),
  node: process.version,
  package_lock_sha256: sha256(lock),
  sources,
  outputs
}
await writeFile(join(out, 'PROVENANCE.json'), JSON.stringify(provenance, null, 2) + '\n')
for (const [name, hash] of Object.entries(outputs)) {
  const size = (await readFile(join(out, name))).length
  console.log(`${name}\t${size} bytes\t${hash.slice(0, 12)}`)
}
// The bundle's own manifest is for size checks, not for the server.
if (process.env.SLI2VOL_WEB_META) {
  await writeFile(process.env.SLI2VOL_WEB_META, JSON.stringify(result.metafile))
}
