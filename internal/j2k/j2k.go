// Package j2k decodes JPEG 2000 codestreams (DICOM's transfer syntaxes 1.2.840.10008.1.2.4.90
// and .91) into greyscale samples with OpenJPEG (Debian's libopenjp2-7-dev), from memory.
package j2k

// /* Linked statically: the sli2vol binary gains no shared-library dependency (the GPU
//    bundle runs on machines without OpenJPEG). */
// #cgo CFLAGS: -I/usr/include/openjpeg-2.5
// #cgo LDFLAGS: -l:libopenjp2.a -lm -lpthread
// #include <stdlib.h>
// #include <string.h>
// #include <openjpeg.h>
//
// typedef struct { const unsigned char *data; OPJ_SIZE_T len, pos; } membuf;
//
// static OPJ_SIZE_T mem_read(void *dst, OPJ_SIZE_T n, void *user) {
//   membuf *m = (membuf *)user;
//   if (m->pos >= m->len) return (OPJ_SIZE_T)-1;
//   if (n > m->len - m->pos) n = m->len - m->pos;
//   memcpy(dst, m->data + m->pos, n);
//   m->pos += n;
//   return n;
// }
// static OPJ_OFF_T mem_skip(OPJ_OFF_T n, void *user) {
//   membuf *m = (membuf *)user;
//   if (n < 0) { if ((OPJ_SIZE_T)(-n) > m->pos) n = -(OPJ_OFF_T)m->pos; }
//   else if ((OPJ_SIZE_T)n > m->len - m->pos) n = (OPJ_OFF_T)(m->len - m->pos);
//   m->pos += n;
//   return n;
// }
// static OPJ_BOOL mem_seek(OPJ_OFF_T n, void *user) {
//   membuf *m = (membuf *)user;
//   if (n < 0 || (OPJ_SIZE_T)n > m->len) return OPJ_FALSE;
//   m->pos = (OPJ_SIZE_T)n;
//   return OPJ_TRUE;
// }
// static void quiet(const char *msg, void *user) { (void)msg; (void)user; }
//
// // decode returns NULL and sets *err on failure; on success the caller frees the samples.
// static int *decode(const unsigned char *data, size_t len, int jp2, int *w, int *h, int *prec,
//                    int *sgnd, int *ncomp, const char **err) {
//   membuf m = {data, len, 0};
//   opj_stream_t *s = opj_stream_create(1 << 16, OPJ_TRUE);
//   if (!s) { *err = "cannot create a stream"; return NULL; }
//   opj_stream_set_user_data(s, &m, NULL);
//   opj_stream_set_user_data_length(s, len);
//   opj_stream_set_read_function(s, mem_read);
//   opj_stream_set_skip_function(s, mem_skip);
//   opj_stream_set_seek_function(s, mem_seek);
//   opj_codec_t *c = opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K);
//   opj_set_info_handler(c, quiet, NULL);
//   opj_set_warning_handler(c, quiet, NULL);
//   opj_set_error_handler(c, quiet, NULL);
//   opj_dparameters_t p;
//   opj_set_default_decoder_parameters(&p);
//   opj_image_t *img = NULL;
//   int *out = NULL;
//   if (!opj_setup_decoder(c, &p)) { *err = "decoder setup failed"; goto done; }
//   if (!opj_read_header(s, c, &img)) { *err = "not a readable JPEG 2000 header"; goto done; }
//   if (!opj_decode(c, s, img) || !opj_end_decompress(c, s)) { *err = "JPEG 2000 decoding failed"; goto done; }
//   if (img->numcomps < 1) { *err = "no image component"; goto done; }
//   *w = (int)img->comps[0].w; *h = (int)img->comps[0].h;
//   *prec = (int)img->comps[0].prec; *sgnd = (int)img->comps[0].sgnd; *ncomp = (int)img->numcomps;
//   size_t n = (size_t)(*w) * (size_t)(*h);
//   out = (int *)malloc(n * sizeof(int));
//   if (!out) { *err = "out of memory"; goto done; }
//   memcpy(out, img->comps[0].data, n * sizeof(int));
// done:
//   if (img) opj_image_destroy(img);
//   opj_destroy_codec(c);
//   opj_stream_destroy(s);
//   return out;
// }
import "C"

import (
	"fmt"
	"unsafe"
)

// Image is a decoded single-component JPEG 2000 image: row-major samples, already signed
// or unsigned as the codestream says.
type Image struct {
	Width, Height, Precision int
	Signed                   bool
	Samples                  []int32
}

// Decode decodes a raw J2K codestream (or a JP2 file, which starts with its signature box).
func Decode(data []byte) (*Image, error) {
	if len(data) < 4 {
		return nil, fmt.Errorf("JPEG 2000: %d bytes", len(data))
	}
	jp2 := 0
	if data[0] == 0 && data[1] == 0 && data[2] == 0 && data[3] == 0x0c {
		jp2 = 1
	}
	var w, h, prec, sgnd, ncomp C.int
	var cerr *C.char
	p := C.CBytes(data)
	defer C.free(p)
	out := C.decode((*C.uchar)(p), C.size_t(len(data)), C.int(jp2), &w, &h, &prec, &sgnd, &ncomp, &cerr)
	if out == nil {
		return nil, fmt.Errorf("JPEG 2000: %s", C.GoString(cerr))
	}
	defer C.free(unsafe.Pointer(out))
	if ncomp != 1 {
		return nil, fmt.Errorf("JPEG 2000: %d components, want one (greyscale)", ncomp)
	}
	n := int(w) * int(h)
	img := &Image{Width: int(w), Height: int(h), Precision: int(prec), Signed: sgnd != 0, Samples: make([]int32, n)}
	copy(img.Samples, unsafe.Slice((*int32)(unsafe.Pointer(out)), n))
	return img, nil
}
