package serve

import (
	"archive/zip"
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/sli2vol/sli2vol/data"
)

// zipMagic starts a zip archive (a local file header; an empty archive starts with its end
// record, which holds no series either).
var zipMagic = []byte("PK\x03\x04")

// uploadLimits bound what decodeUpload accepts.
type uploadLimits struct {
	voxels   int64 // limits.max_voxels
	zipBytes int64 // uncompressed bytes of a zip's files
	zipFiles int   // files in a zip
}

func (s *Server) uploadLimits() uploadLimits {
	return uploadLimits{voxels: s.lim.MaxVoxels, zipBytes: s.lim.MaxZipBytes, zipFiles: s.lim.MaxZipFiles}
}

// decodeUpload reads an uploaded volume, told by its content: a zip is a DICOM series,
// anything else is NIfTI (gzipped or not; the reader checks the header, and the voxel limit,
// before reading the voxels).
func (s *Server) decodeUpload(name string, body io.Reader) (*data.Image, error) {
	return decodeVolume(name, body, s.tmp, s.uploadLimits())
}

func decodeVolume(name string, body io.Reader, tmp string, lim uploadLimits) (*data.Image, error) {
	br := bufio.NewReaderSize(body, 1<<16)
	if magic, _ := br.Peek(len(zipMagic)); bytes.Equal(magic, zipMagic) {
		return readZipSeries(name, br, tmp, lim)
	}
	return data.ReadImage(name, br, data.Limits{MaxVoxels: lim.voxels})
}

// readZipSeries spools a zip to the scratch folder (a zip is read from its end), extracts its
// files flat into a folder of their own and reads them as one DICOM series.
func readZipSeries(name string, body io.Reader, tmp string, lim uploadLimits) (*data.Image, error) {
	dir, err := os.MkdirTemp(tmp, "zip-")
	if err != nil {
		return nil, fail(http.StatusInternalServerError, "scratch folder: %w", err)
	}
	defer os.RemoveAll(dir)
	spool := filepath.Join(dir, "upload.zip")
	f, err := os.Create(spool)
	if err != nil {
		return nil, fail(http.StatusInternalServerError, "scratch file: %w", err)
	}
	_, err = io.Copy(f, body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("%s: reading the upload: %w", name, err)
	}
	zr, err := zip.OpenReader(spool)
	if err != nil {
		return nil, fmt.Errorf("%s: not a readable zip: %w", name, err)
	}
	defer zr.Close()
	series := filepath.Join(dir, "series")
	if err := os.Mkdir(series, 0o700); err != nil {
		return nil, fail(http.StatusInternalServerError, "scratch folder: %w", err)
	}
	if err := extractZip(&zr.Reader, series, lim); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	img, err := data.LoadDICOMSeries(series, "", data.Limits{MaxVoxels: lim.voxels})
	if err != nil {
		return nil, fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), series+": "))
	}
	img.Source = name
	return img, nil
}

// extractZip writes the zip's regular files into dir under numbered names: no entry name
// ever becomes a path (no zip slip), and an entry naming a parent folder or an absolute path
// is refused outright. Folders, links, hidden files and macOS metadata are skipped; the
// files' count and uncompressed size are bounded as they are written, not as declared.
func extractZip(zr *zip.Reader, dir string, lim uploadLimits) error {
	left, files := lim.zipBytes, 0
	for i, f := range zr.File {
		name := strings.ReplaceAll(f.Name, "\\", "/")
		if !filepath.IsLocal(filepath.FromSlash(name)) || path.IsAbs(name) || strings.Contains(name, ":") {
			return fmt.Errorf("zip entry %q leaves the archive's folder: refused", f.Name)
		}
		base := path.Base(name)
		if !f.Mode().IsRegular() || strings.HasPrefix(base, ".") || strings.HasPrefix(name, "__MACOSX/") {
			continue
		}
		if files++; files > lim.zipFiles {
			return fail(http.StatusRequestEntityTooLarge, "more than %d files in the zip", lim.zipFiles)
		}
		n, err := extractFile(f, filepath.Join(dir, fmt.Sprintf("%06d.dcm", i)), left, lim.zipBytes)
		if err != nil {
			return err
		}
		left -= n
	}
	if files == 0 {
		return fmt.Errorf("the zip holds no files")
	}
	return nil
}

// extractFile writes one entry, refusing it past left of the zip's total bytes.
func extractFile(f *zip.File, out string, left, total int64) (int64, error) {
	rc, err := f.Open()
	if err != nil {
		return 0, fmt.Errorf("zip entry %q: %w", f.Name, err)
	}
	defer rc.Close()
	w, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fail(http.StatusInternalServerError, "scratch file: %w", err)
	}
	n, err := io.Copy(w, io.LimitReader(rc, left+1))
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil:
		return n, fmt.Errorf("zip entry %q: %w", f.Name, err)
	case n > left:
		return n, fail(http.StatusRequestEntityTooLarge, "the zip's files exceed %d bytes uncompressed", total)
	}
	return n, nil
}
