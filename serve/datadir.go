package serve

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// The data root: clients name volumes by paths relative to it and can never reach outside it.

// maxListed bounds /api/data's answer and maxWalked the entries it visits, so that a root
// holding a whole archive answers quickly.
const (
	maxListed = 5000
	maxWalked = 200000
)

// errStopWalk ends a listing at its bounds.
var errStopWalk = errors.New("listing bound reached")

// resolveData turns a client's relative path into a path inside the data root: absolute paths
// and parent components are refused (400) and so is a symlink that leads out of the root
// (403). The check resolves every link, so what is opened is what was checked (a link
// swapped between the check and the read is the data owner's doing, not the client's).
func (s *Server) resolveData(rel string) (string, error) {
	switch {
	case s.root == "":
		return "", fail(http.StatusNotFound, "this server has no data folder (start it with --data DIR)")
	case rel == "":
		return "", fail(http.StatusBadRequest, "no path given")
	case filepath.IsAbs(rel) || strings.HasPrefix(rel, "/") || strings.HasPrefix(rel, "\\"):
		return "", fail(http.StatusBadRequest, "path %q is absolute: give it relative to the data folder", rel)
	case !filepath.IsLocal(filepath.FromSlash(rel)):
		return "", fail(http.StatusBadRequest, "path %q leaves the data folder", rel)
	}
	real, err := filepath.EvalSymlinks(filepath.Join(s.root, filepath.FromSlash(rel)))
	if err != nil {
		return "", fail(http.StatusNotFound, "no volume %q in the data folder", rel)
	}
	if inside, err := filepath.Rel(s.root, real); err != nil || !(inside == "." || filepath.IsLocal(inside)) {
		return "", fail(http.StatusForbidden, "path %q leads out of the data folder (a symlink)", rel)
	}
	return real, nil
}

// handleData lists the volumes under the data root: NIfTI files and folders holding DICOM
// files ("dir/"), as paths relative to the root; hidden entries and symlinks are skipped.
func (s *Server) handleData(w http.ResponseWriter, r *http.Request) error {
	vols := []string{}
	if s.root != "" {
		vols = listVolumes(s.root)
	}
	writeJSON(w, http.StatusOK, map[string]any{"volumes": vols})
	return nil
}

func listVolumes(root string) []string {
	var out []string
	walked := 0
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if walked++; walked > maxWalked || len(out) >= maxListed {
			return errStopWalk
		}
		if err != nil { // an unreadable entry is left out
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		if rel != "." && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		lower := strings.ToLower(d.Name())
		switch {
		case d.IsDir() && rel != "." && holdsDICOM(p):
			out = append(out, filepath.ToSlash(rel)+"/")
		case d.Type().IsRegular() && (strings.HasSuffix(lower, ".nii") || strings.HasSuffix(lower, ".nii.gz")):
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// holdsDICOM reports whether one of a folder's first files is DICOM ("DICM" after the
// 128-byte preamble): a quick look, not a validation.
func holdsDICOM(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	looked := 0
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if looked++; looked > 8 {
			return false
		}
		if isDICOMFile(filepath.Join(dir, e.Name())) {
			return true
		}
	}
	return false
}

func isDICOMFile(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [132]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return false
	}
	return bytes.Equal(b[128:], []byte("DICM"))
}
