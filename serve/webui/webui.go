// Package webui holds the page of `sli2vol serve`: the NiiVue viewer, the drawing tools and the
// propagation controls, built from web/ by `make web` (esbuild) and committed under dist/ so
// that `go build` needs no npm. dist/PROVENANCE.json records the versions of NiiVue, esbuild
// and node that built it, the sha256 of web/package-lock.json and of every source and output
// file; the package's test checks the embedded files against it.
package webui

import (
	"embed"
	"io/fs"
)

//go:embed dist
var dist embed.FS

// FS is the built page: index.html, app.js, app.css and PROVENANCE.json at its root. The
// page asks for its files as assets/app.js and assets/app.css (relative to /).
var FS fs.FS = mustSub(dist, "dist")

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // dist is embedded at build time: only a broken build gets here
	}
	return sub
}
