package data

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// A DICOM tree: a folder whose subfolders (at any depth, the folder itself included) hold
// DICOM series; each series is one case. Opening a tree must stay cheap with thousands of
// series, so each file is identified from the first bytes of its header alone
// (readDICOMHeader): no pixel data is read and no volume is assembled until a case is loaded.

// treeFolder is what the walk found in one folder: DICOM image files per series, and the
// NIfTI files that may be those series' labels or annotations.
type treeFolder struct {
	series map[string]int // files per SeriesInstanceUID
	nifti  []string
}

// openDICOMTree opens root as a DICOM tree (see OpenDataset).
func openDICOMTree(root string) (*Dataset, error) {
	folders, problem, err := walkDICOMTree(root)
	if err != nil {
		return nil, fmt.Errorf("dataset %s: %w", root, err)
	}
	cases, err := treeCases(root, folders)
	if err != nil {
		return nil, err
	}
	if len(cases) == 0 && problem != nil {
		return nil, fmt.Errorf("dataset %s: no readable DICOM series (first problem: %w)", root, problem)
	}
	if len(cases) == 0 {
		return nil, fmt.Errorf("dataset %s: no NIfTI images or DICOM series found", root)
	}
	name := filepath.Base(filepath.Clean(root))
	if abs, err := filepath.Abs(root); err == nil {
		name = filepath.Base(abs)
	}
	return &Dataset{Root: root, Name: name, Cases: cases}, nil
}

// walkDICOMTree walks root once, skipping hidden files and folders, and returns the folders
// holding DICOM images or NIfTI files. Files that are not DICOM images (other files, DICOMDIR,
// structured reports) are skipped quietly; the first DICOM file that could not be read is
// returned as problem, to explain a tree in which nothing was found.
func walkDICOMTree(root string) (map[string]*treeFolder, error, error) {
	folders := map[string]*treeFolder{}
	folder := func(dir string) *treeFolder {
		if folders[dir] == nil {
			folders[dir] = &treeFolder{series: map[string]int{}}
		}
		return folders[dir]
	}
	var problem error
	buf := make([]byte, headerPrefix)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == root {
				return unwrapPath(err)
			}
			if problem == nil {
				problem = fmt.Errorf("%s: %w", path, unwrapPath(err))
			}
			return nil // an unreadable subfolder: WalkDir skips it
		}
		if path != root && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		name := d.Name()
		switch {
		case d.IsDir():
		case strings.HasSuffix(name, ".nii") || strings.HasSuffix(name, ".nii.gz"):
			f := folder(filepath.Dir(path))
			f.nifti = append(f.nifti, path)
		default:
			h, err := readDICOMHeader(path, buf)
			switch {
			case errors.Is(err, errNotDICOM): // another kind of file
			case err != nil:
				if problem == nil {
					problem = fmt.Errorf("%s: %w", path, err)
				}
			case h.rows > 0:
				folder(filepath.Dir(path)).series[h.series]++
			}
		}
		return nil
	})
	return folders, problem, err
}

// treeCases makes one case per series, with its labels and annotation, sorted by ID. The ID
// is the folder's path below root ("_" for the separators; root's own name for root), with a
// short form of the UID appended where the folder holds several series.
func treeCases(root string, folders map[string]*treeFolder) ([]Case, error) {
	var cases []Case
	owner := map[string]string{} // case ID → its folder, to name both in a collision
	dirs := make([]string, 0, len(folders))
	for dir := range folders {
		dirs = append(dirs, dir)
	}
	sort.Strings(dirs) // the same error first on every run
	for _, dir := range dirs {
		f := folders[dir]
		if len(f.series) == 0 {
			continue
		}
		uids := make([]string, 0, len(f.series))
		for u := range f.series {
			uids = append(uids, u)
		}
		sort.Strings(uids)
		if n := f.series[""]; n > 0 && len(uids) > 1 {
			// Anonymisers may blank the UID; alone in its folder such a series still loads
			// (as the folder's only series), beside others it cannot be asked for.
			return nil, fmt.Errorf("%s: %d DICOM images without a SeriesInstanceUID beside %d other series; move them to a folder of their own", dir, n, len(uids)-1)
		}
		short := shortUIDs(uids)
		labels, anns, err := treeSidecars(f.nifti, uids, short)
		if err != nil {
			return nil, err
		}
		base := treeID(root, dir)
		for i, u := range uids {
			id := base
			if len(uids) > 1 {
				id += "_" + short[i]
			}
			if prev, ok := owner[id]; ok {
				return nil, fmt.Errorf("dataset %s: case id %q names series in %s and in %s; rename one folder", root, id, prev, dir)
			}
			owner[id] = dir
			cases = append(cases, Case{ID: id, Image: dir, Series: u, Label: labels[u], Annotation: anns[u], Slice: -1, Split: "train"})
		}
	}
	sort.Slice(cases, func(a, b int) bool { return cases[a].ID < cases[b].ID })
	return cases, nil
}

// treeID is dir's path below root with "_" for the separators, or root's own name.
func treeID(root, dir string) string {
	rel, err := filepath.Rel(root, dir)
	if err != nil || rel == "." {
		if abs, err := filepath.Abs(dir); err == nil {
			return filepath.Base(abs)
		}
		return filepath.Base(filepath.Clean(dir))
	}
	return strings.ReplaceAll(filepath.ToSlash(rel), "/", "_")
}

// shortUIDs are the UIDs' last 8 characters, or as many more as it takes to tell them apart:
// recognisable in a case ID, and stable (they depend only on the folder's own series).
func shortUIDs(uids []string) []string {
	out := make([]string, len(uids))
	for n := 8; ; n++ {
		seen := map[string]bool{}
		longest := 0
		for i, u := range uids {
			out[i] = strings.TrimLeft(u[max(0, len(u)-n):], ".")
			seen[out[i]] = true
			longest = max(longest, len(u))
		}
		if len(seen) == len(uids) || n >= longest {
			return out
		}
	}
}

// treeSidecars assigns the folder's label and annotation files to its series. In a folder of
// one series any label-named file is its label; where there are several, the file's prefix
// must name the series (its short UID or the UID: "<short>_seg.nii.gz"), since a label on the
// wrong series' grid would only fail much later.
func treeSidecars(nifti, uids, short []string) (labels, anns map[string]string, err error) {
	labels, anns = map[string]string{}, map[string]string{}
	sort.Strings(nifti)
	for _, p := range nifti {
		kind, prefix := sidecarKind(stem(p))
		if kind == "" {
			continue // another NIfTI file (a converted volume, say): not ours to pair
		}
		which := -1 // the series' index (its UID may be "", blanked by an anonymiser)
		if len(uids) == 1 {
			which = 0
		}
		for i, u := range uids {
			if len(uids) > 1 && (prefix == u || prefix == short[i]) {
				which = i
			}
		}
		if which < 0 {
			return nil, nil, fmt.Errorf("%s: the folder holds %d series (%s); name the file <series>_%s.nii.gz with one of them to say which it belongs to", p, len(uids), strings.Join(short, ", "), kind)
		}
		m := labels
		if kind == "annotation" {
			m = anns
		}
		uid := uids[which]
		if prev := m[uid]; prev != "" {
			return nil, nil, fmt.Errorf("%s: a second %s file for series %q (the first: %s)", p, kind, uid, filepath.Base(prev))
		}
		m[uid] = p
	}
	return labels, anns, nil
}

// sidecarKind tells a label file (label/seg/mask, or a stem ending in a label suffix) or an
// annotation file (annotation, or ending in _annotation) from other NIfTI files, and returns
// the rest of the stem.
func sidecarKind(s string) (kind, prefix string) {
	switch {
	case s == "label" || s == "seg" || s == "mask":
		return "label", ""
	case s == "annotation":
		return "annotation", ""
	case strings.HasSuffix(s, "_annotation"):
		return "annotation", strings.TrimSuffix(s, "_annotation")
	}
	for _, suf := range labelSuffixes {
		if strings.HasSuffix(s, suf) {
			return "label", strings.TrimSuffix(s, suf)
		}
	}
	return "", ""
}

// headerPrefix is how much of a file the tree scan reads first: the elements up to Rows fit
// in it for typical CT and MR slices; a longer header (or a file without an image, walked to
// its end) is read in full.
const headerPrefix = 16 << 10

var (
	errNotDICOM    = errors.New("not a DICOM Part 10 file")
	errHeaderShort = errors.New("header truncated")
	errHeaderEnd   = errors.New("end of the data set")
)

// dicomHeader is what the tree scan learns from a file's header.
type dicomHeader struct {
	series string // SeriesInstanceUID
	rows   int    // 0 for objects without an image (DICOMDIR, reports, structure sets)
}

// readDICOMHeader reads path's header into buf (headerPrefix bytes) and, only where the
// header runs past it, the rest of the file.
func readDICOMHeader(path string, buf []byte) (dicomHeader, error) {
	f, err := os.Open(path)
	if err != nil {
		return dicomHeader{}, unwrapPath(err)
	}
	defer f.Close()
	n, err := io.ReadFull(f, buf)
	whole := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
	if err != nil && !whole {
		return dicomHeader{}, err
	}
	h, err := parseDICOMHeader(buf[:n], whole)
	if errors.Is(err, errHeaderShort) && !whole {
		rest, rerr := io.ReadAll(f)
		if rerr != nil {
			return dicomHeader{}, rerr
		}
		h, err = parseDICOMHeader(append(buf[:n:n], rest...), true)
	}
	return h, err
}

// parseDICOMHeader walks the element headers of b (the file, whole or its first bytes) until
// it has SeriesInstanceUID and Rows, or reaches the pixel data or the end. It allocates
// nothing from declared lengths, which a malformed file may set to gigabytes (see
// checkDICOMLengths), and it accepts the transfer syntaxes the series reader reads (little
// endian, implicit or explicit VR; compressed pixel data is the reader's to judge).
func parseDICOMHeader(b []byte, whole bool) (dicomHeader, error) {
	var h dicomHeader
	if len(b) < 132 || string(b[128:132]) != "DICM" {
		if !whole && len(b) < 132 {
			return h, errHeaderShort
		}
		return h, errNotDICOM
	}
	w := &headerWalk{b: b, pos: 132, bo: binary.LittleEndian} // file meta: explicit VR little endian
	ts := ""
	for w.pos+2 <= len(b) && binary.LittleEndian.Uint16(b[w.pos:]) == 2 {
		e, err := w.next()
		if err != nil {
			return h, w.fail(err, whole)
		}
		v, err := w.body(e)
		if err != nil {
			return h, w.fail(err, whole)
		}
		if e.elem == 0x0010 {
			ts = uidValue(v)
		}
	}
	switch ts {
	case "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2":
		return h, fmt.Errorf("transfer syntax %s (deflated or big endian) is not read by sli2vol; convert it first (e.g. gdcmconv --raw)", ts)
	case "", "1.2.840.10008.1.2": // no transfer syntax: implicit VR, as the DICOM library first tries
		w.implicit = true
	}
	for {
		if w.pos == len(b) {
			return h, w.fail(errHeaderEnd, whole)
		}
		e, err := w.next()
		if err != nil {
			return h, w.fail(err, whole)
		}
		if e.group >= 0x7FE0 {
			return h, nil // pixel data: never read here
		}
		v, err := w.body(e)
		if err != nil {
			return h, w.fail(err, whole)
		}
		switch {
		case e.group == 0x0020 && e.elem == 0x000E:
			h.series = uidValue(v)
		case e.group == 0x0028 && e.elem == 0x0010 && len(v) >= 2:
			h.rows = int(w.bo.Uint16(v))
		}
		if h.series != "" && h.rows > 0 {
			return h, nil // all the scan needs (elements are not trusted to be in tag order)
		}
	}
}

// fail turns the walk's end into the caller's answer: a prefix that ran out asks for the whole
// file; the whole file ending cleanly (a header without Rows) is a header; anything else is
// the file's fault.
func (w *headerWalk) fail(err error, whole bool) error {
	switch {
	case errors.Is(err, errHeaderEnd) && whole:
		return nil
	case (errors.Is(err, errHeaderShort) || errors.Is(err, errHeaderEnd)) && !whole:
		return errHeaderShort
	}
	return err
}

// uidValue is a UI value as the DICOM library reads it: NUL/space padding trimmed, the first of
// several values.
func uidValue(v []byte) string {
	s := strings.Trim(string(v), " \x00")
	if i := strings.IndexByte(s, '\\'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

const undefinedLength = 0xFFFFFFFF

// headerWalk steps over element headers in b from pos.
type headerWalk struct {
	b        []byte
	pos      int
	bo       binary.ByteOrder
	implicit bool
	steps    int
}

type elemHeader struct {
	group, elem uint16
	length      uint32
}

// next reads one element header. Items and delimiters (group FFFE) never carry a VR.
func (w *headerWalk) next() (elemHeader, error) {
	var e elemHeader
	if w.steps++; w.steps > 1<<20 {
		return e, errors.New("too many DICOM elements")
	}
	if w.pos+8 > len(w.b) {
		return e, errHeaderShort
	}
	b := w.b[w.pos:]
	e.group, e.elem = w.bo.Uint16(b), w.bo.Uint16(b[2:])
	explicit := !w.implicit || e.group == 2
	if e.group == 0xFFFE || !explicit {
		e.length = w.bo.Uint32(b[4:])
		w.pos += 8
		return e, nil
	}
	switch string(b[4:6]) {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		if w.pos+12 > len(w.b) {
			return e, errHeaderShort
		}
		e.length = w.bo.Uint32(b[8:])
		w.pos += 12
	default:
		e.length = uint32(w.bo.Uint16(b[6:]))
		w.pos += 8
	}
	return e, nil
}

// body steps over the value of the element whose header next just read and returns its
// bytes (nil for a sequence).
func (w *headerWalk) body(e elemHeader) ([]byte, error) {
	if e.length == undefinedLength {
		return nil, w.skipItems(0)
	}
	if int64(e.length) > int64(len(w.b)-w.pos) {
		return nil, fmt.Errorf("%w: element (%04x,%04x) declares %d bytes, %d left", errHeaderShort, e.group, e.elem, e.length, len(w.b)-w.pos)
	}
	v := w.b[w.pos : w.pos+int(e.length)]
	w.pos += int(e.length)
	return v, nil
}

// skipItems steps over the items of an undefined-length value up to its sequence delimiter;
// an undefined-length item is walked element by element to its item delimiter.
func (w *headerWalk) skipItems(depth int) error {
	if depth > 32 {
		return errors.New("sequences nested too deep")
	}
	inItem := false
	for {
		e, err := w.next()
		if err != nil {
			return err
		}
		switch {
		case e.group == 0xFFFE && e.elem == 0xE0DD && !inItem:
			return nil
		case e.group == 0xFFFE && e.elem == 0xE00D:
			inItem = false
		case e.group == 0xFFFE && e.elem == 0xE000 && e.length == undefinedLength:
			inItem = true
		case e.length == undefinedLength:
			if err := w.skipItems(depth + 1); err != nil {
				return err
			}
		case int64(e.length) > int64(len(w.b)-w.pos):
			return errHeaderShort
		default:
			w.pos += int(e.length) // a defined-length item, or an element inside an item
		}
	}
}
