package main

import "github.com/sli2vol/sli2vol/serve/webui"

// pageFS is the page `sli2vol serve` serves at /: the NiiVue bundle built from web/ by
// `make web` and embedded by package webui (its PROVENANCE.json records how).
var pageFS = webui.FS
