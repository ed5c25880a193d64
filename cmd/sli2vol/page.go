package main

import (
	"embed"
	"io/fs"
)

// The page `sli2vol serve` serves at /. For now a placeholder saying the web bundle is not
// built; the bundle replaces it here.

//go:embed page
var pageFiles embed.FS

// pageFS is the page's folder as the server's root (index.html at /).
var pageFS = mustSub(pageFiles, "page")

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // an embedded folder that is not there: a build mistake
	}
	return sub
}
