package data

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Case is one volume of a dataset: its image, and where known its label volume, its
// annotation file (one labelled slice) or the annotated slice number.
type Case struct {
	ID         string
	Image      string // a NIfTI file, or a folder of DICOM files
	Series     string // SeriesInstanceUID to read from the folder Image; "": a NIfTI file, or the folder's only series
	Label      string // "" when the case has no labels
	Annotation string // optional file whose single labelled slice is the annotation
	Slice      int    // annotated anatomical slice; −1 when not given
	Split      string // "train" or "test"
}

// Dataset is a list of cases.
type Dataset struct {
	Root   string
	Name   string
	Cases  []Case
	Labels map[int32]string // structure names by id (dataset.json "labels"), when known
}

// LabelName is the structure's name, or "label N".
func (d *Dataset) LabelName(id int32) string {
	if n, ok := d.Labels[id]; ok && n != "" {
		return n
	}
	return fmt.Sprintf("label %d", id)
}

// Split returns the cases of one split.
func (d *Dataset) Split(split string) []Case {
	var out []Case
	for _, c := range d.Cases {
		if c.Split == split {
			out = append(out, c)
		}
	}
	return out
}

// OpenDataset reads a Medical Segmentation Decathlon folder (imagesTr/labelsTr,
// imagesTs/labelsTs, dataset.json optional), a YAML manifest (an entry's image may be a DICOM
// folder, with series: UID to pick one of several), a plain folder of image and label files
// paired by name (X.nii.gz with X_label / X_seg / X_mask / X_gt .nii.gz), or — a folder
// without NIfTI images at its top — a tree of DICOM series: every series found below it, at any
// depth, is a case, its ID the folder's path below the tree with "_" for the separators (and
// the UID's last 8 characters appended where a folder holds several series). A series'
// label and annotation are NIfTI files in its folder: label.nii.gz, seg.nii.gz, mask.nii.gz
// or X_seg.nii.gz (the other label suffixes too), and annotation.nii.gz; in a folder of
// several series the file names its series, e.g. 12345678_seg.nii.gz. Hidden files and
// folders are skipped, and files are identified from their headers alone (no pixel data is
// read until a case is loaded).
func OpenDataset(path string) (*Dataset, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("dataset %s: %w", path, unwrapPath(err))
	}
	var d *Dataset
	switch {
	case !st.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")):
		d, err = openManifest(path)
	case !st.IsDir():
		return nil, fmt.Errorf("dataset %s: not a folder or a .yaml manifest", path)
	case isDir(filepath.Join(path, "imagesTr")) || isDir(filepath.Join(path, "imagesTs")):
		d, err = openMSD(path)
	default:
		d, err = openPlain(path)
		if err == nil && len(d.Cases) == 0 {
			d, err = openDICOMTree(path)
		}
	}
	if err != nil {
		return nil, err
	}
	if len(d.Cases) == 0 {
		return nil, fmt.Errorf("dataset %s: no NIfTI images found", path)
	}
	return d, nil
}

func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// niftiFiles lists .nii/.nii.gz files in dir, skipping hidden and macOS "._" files (which
// the Decathlon tarballs contain).
func niftiFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || strings.HasPrefix(n, ".") {
			continue
		}
		if strings.HasSuffix(n, ".nii") || strings.HasSuffix(n, ".nii.gz") {
			out = append(out, filepath.Join(dir, n))
		}
	}
	sort.Strings(out)
	return out, nil
}

func stem(p string) string {
	b := filepath.Base(p)
	return strings.TrimSuffix(strings.TrimSuffix(b, ".gz"), ".nii")
}

func openMSD(root string) (*Dataset, error) {
	d := &Dataset{Root: root, Name: filepath.Base(filepath.Clean(root))}
	if b, err := os.ReadFile(filepath.Join(root, "dataset.json")); err == nil {
		var meta struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
		}
		if err := json.Unmarshal(b, &meta); err != nil {
			return nil, fmt.Errorf("%s: not valid JSON: %w", filepath.Join(root, "dataset.json"), err)
		}
		if meta.Name != "" {
			d.Name = meta.Name
		}
		d.Labels = map[int32]string{}
		for k, v := range meta.Labels {
			var id int32
			if _, err := fmt.Sscan(k, &id); err == nil {
				d.Labels[id] = v
			}
		}
	}
	if len(d.Labels) == 0 {
		// TotalSegmentator-style labels.json: {"1": "spleen", ...}
		if b, err := os.ReadFile(filepath.Join(root, "labels.json")); err == nil {
			var names map[string]string
			if json.Unmarshal(b, &names) == nil {
				d.Labels = map[int32]string{}
				for k, v := range names {
					var id int32
					if _, err := fmt.Sscan(k, &id); err == nil {
						d.Labels[id] = v
					}
				}
			}
		}
	}
	for _, sp := range []struct{ split, images, labels string }{{"train", "imagesTr", "labelsTr"}, {"test", "imagesTs", "labelsTs"}} {
		imgDir := filepath.Join(root, sp.images)
		if !isDir(imgDir) {
			continue
		}
		imgs, err := niftiFiles(imgDir)
		if err != nil {
			return nil, fmt.Errorf("dataset %s: %w", root, err)
		}
		labDir := filepath.Join(root, sp.labels)
		hasLabels := isDir(labDir)
		for _, im := range imgs {
			id := strings.TrimSuffix(stem(im), "_0000") // nnU-Net names images X_0000
			c := Case{ID: id, Image: im, Slice: -1, Split: sp.split}
			if hasLabels {
				lab := ""
				for _, cand := range []string{id + ".nii.gz", id + ".nii", filepath.Base(im)} {
					if _, err := os.Stat(filepath.Join(labDir, cand)); err == nil {
						lab = filepath.Join(labDir, cand)
						break
					}
				}
				if lab == "" {
					return nil, fmt.Errorf("%s: no label for this image in %s", im, labDir)
				}
				c.Label = lab
			}
			d.Cases = append(d.Cases, c)
		}
	}
	return d, nil
}

var labelSuffixes = []string{"_label", "_labels", "_seg", "_mask", "_gt", "-label", "-seg", "-mask"}

func openPlain(root string) (*Dataset, error) {
	files, err := niftiFiles(root)
	if err != nil {
		return nil, fmt.Errorf("dataset %s: %w", root, err)
	}
	d := &Dataset{Root: root, Name: filepath.Base(filepath.Clean(root))}
	labels := map[string]string{}
	var images []string
	for _, f := range files {
		s := stem(f)
		if k, prefix := sidecarKind(s); k != "" && prefix == "" {
			continue // label.nii.gz, annotation.nii.gz: a DICOM series' files, not an image
		}
		isLabel := false
		for _, suf := range labelSuffixes {
			if strings.HasSuffix(s, suf) {
				labels[strings.TrimSuffix(s, suf)] = f
				isLabel = true
				break
			}
		}
		if !isLabel {
			images = append(images, f)
		}
	}
	used := map[string]bool{}
	for _, im := range images {
		id := stem(im)
		c := Case{ID: id, Image: im, Label: labels[id], Slice: -1, Split: "train"}
		used[id] = true
		d.Cases = append(d.Cases, c)
	}
	for id, l := range labels {
		if !used[id] {
			return nil, fmt.Errorf("%s: a label file without its image %s.nii(.gz)", l, id)
		}
	}
	return d, nil
}

type manifest struct {
	Name  string `yaml:"name"`
	Cases []struct {
		ID         string `yaml:"id"`
		Image      string `yaml:"image"`
		Label      string `yaml:"label"`
		Annotation string `yaml:"annotation"`
		Series     string `yaml:"series"`
		Slice      *int   `yaml:"slice"`
		Split      string `yaml:"split"`
	} `yaml:"cases"`
}

func openManifest(path string) (*Dataset, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, unwrapPath(err))
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var m manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: not a valid manifest: %s", path, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	dir := filepath.Dir(path)
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	d := &Dataset{Root: dir, Name: m.Name}
	if d.Name == "" {
		d.Name = stem(path)
	}
	seen := map[string]bool{}
	for i, c := range m.Cases {
		if c.Image == "" {
			return nil, fmt.Errorf("%s: case %d has no image", path, i+1)
		}
		cs := Case{ID: c.ID, Image: abs(c.Image), Series: c.Series, Label: abs(c.Label), Annotation: abs(c.Annotation), Slice: -1, Split: c.Split}
		if cs.ID == "" {
			cs.ID = stem(c.Image)
		}
		if seen[cs.ID] {
			return nil, fmt.Errorf("%s: case id %q appears twice", path, cs.ID)
		}
		seen[cs.ID] = true
		if c.Slice != nil {
			if *c.Slice < 0 {
				return nil, fmt.Errorf("%s: case %s: slice %d is negative", path, cs.ID, *c.Slice)
			}
			cs.Slice = *c.Slice
		}
		switch cs.Split {
		case "":
			cs.Split = "train"
		case "train", "test":
		default:
			return nil, fmt.Errorf("%s: case %s: split %q, want train or test", path, cs.ID, c.Split)
		}
		for _, f := range []string{cs.Image, cs.Label, cs.Annotation} {
			if f == "" {
				continue
			}
			if _, err := os.Stat(f); err != nil {
				return nil, fmt.Errorf("%s: case %s: %s: %w", path, cs.ID, f, unwrapPath(err))
			}
		}
		if cs.Series != "" && !isDir(cs.Image) {
			return nil, fmt.Errorf("%s: case %s: series %s given, but %s is not a DICOM folder", path, cs.ID, cs.Series, cs.Image)
		}
		d.Cases = append(d.Cases, cs)
	}
	return d, nil
}

// LoadImage reads the case's image: series Series of the DICOM folder Image when Series is
// set (a folder in a DICOM tree may hold several series), else what the function LoadImage
// reads (a NIfTI file, or a folder of one series).
func (c Case) LoadImage(lim Limits) (*Image, error) {
	if c.Series == "" {
		return LoadImage(c.Image, lim)
	}
	return LoadDICOMSeries(c.Image, c.Series, lim)
}

// LoadCase reads a case's image and (when it has one) its label volume, and checks that
// they share a grid: same shape and affine within 1e-3 mm.
func LoadCase(c Case, lim Limits) (*Image, *Labels, error) {
	img, err := c.LoadImage(lim)
	if err != nil {
		return nil, nil, err
	}
	if c.Label == "" {
		return img, nil, nil
	}
	lab, err := LoadLabels(c.Label, lim)
	if err != nil {
		return nil, nil, err
	}
	if err := img.SameGrid(&lab.Geometry, 1e-3); err != nil {
		img := c.Image
		if c.Series != "" {
			img += " (series " + c.Series + ")"
		}
		return nil, nil, fmt.Errorf("%s: does not lie on the grid of its image %s: %w", c.Label, img, err)
	}
	return img, lab, nil
}
