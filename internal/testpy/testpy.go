// Package testpy finds a Python interpreter with given modules for interop tests (PyTorch,
// nibabel). Debian's python3-torch lives in /usr/bin/python3's site-packages, which a python3
// earlier on PATH (pyenv, venv) may not see, so several candidates are tried.
package testpy

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Find returns the first interpreter that imports every module, or skips the test with a
// message naming the Debian packages to install. SLI2VOL_PYTHON, when set, is tried first.
func Find(t testing.TB, modules ...string) string {
	t.Helper()
	if py, ok := Lookup(modules...); ok {
		return py
	}
	pkgs := make([]string, len(modules))
	for i, m := range modules {
		pkgs[i] = "python3-" + m
	}
	t.Skipf("no python3 with %s: interop not tested (apt install %s)", strings.Join(modules, ", "), strings.Join(pkgs, " "))
	return ""
}

// Lookup is Find without a test: the interpreter and whether one was found.
func Lookup(modules ...string) (string, bool) {
	var cands []string
	if p := os.Getenv("SLI2VOL_PYTHON"); p != "" {
		cands = append(cands, p)
	}
	cands = append(cands, "/usr/bin/python3", "python3")
	code := "import " + strings.Join(modules, ", ")
	for _, c := range cands {
		path, err := exec.LookPath(c)
		if err != nil {
			continue
		}
		if exec.Command(path, "-c", code).Run() == nil {
			return path, true
		}
	}
	return "", false
}
