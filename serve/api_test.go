package serve

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/infer"
)

// largestSlice is the anatomical slice where structure id has the most voxels.
func largestSlice(p phantom, id int32) int {
	s, _ := data.NewSlicer(&p.g, -1)
	best, area := 0, -1
	for n := 0; n < s.Len(); n++ {
		a := 0
		for _, v := range data.Slice(s, p.lab, n) {
			if v == id {
				a++
			}
		}
		if a > area {
			best, area = n, a
		}
	}
	return best
}

// The whole API path: upload a phantom, annotate two truth slices, start a job, follow its
// events (progress in order, throttled, then done), and fetch a mask that equals what
// infer.Job.Run gives on the same input and lies on the input's grid (same affine).
func TestUploadAnnotateSegment(t *testing.T) {
	job, g := gatedJob(t, 3)
	_, c := start(t, Options{Job: job, Info: Info{Version: "test", Model: "small"}})
	info := c.must(http.StatusOK, "GET", "/api/info", nil)
	if info["model"] != "small" || info["mode"] != "sli2vol+" || info["device"] != "cpu" || info["has_data"] != false {
		t.Fatalf("info: %v", info)
	}
	p := newPhantom(7)
	sid := c.session()
	vol := c.upload(sid, "ct.nii.gz", p.niiGz(t))
	if fmt.Sprint(vol["dims"]) != "[48 40 20]" || vol["slice_axis"] != 2.0 || vol["plane"] != "axial" || vol["slices"] != 20.0 {
		t.Fatalf("volume: %v", vol)
	}
	vpath := "/api/sessions/" + sid + "/volumes/" + vol["volume"].(string)
	back, err := data.ReadImage("image", bytes.NewReader(c.do("GET", vpath+"/image.nii.gz", nil).body), data.DefaultLimits)
	if err != nil || !slices.Equal(back.Data, p.img) || back.SameGrid(&p.g, 1e-6) != nil {
		t.Fatalf("image.nii.gz is not the uploaded volume: %v", err)
	}

	n := largestSlice(p, 1)
	ann := p.annotation(t, n, n+3)
	st := c.must(http.StatusAccepted, "POST", vpath+"/jobs", ann)
	if fmt.Sprint(st["annotated_slices"]) != fmt.Sprint([]int{n, n + 3}) {
		t.Fatalf("annotated slices %v, want [%d %d]", st["annotated_slices"], n, n+3)
	}
	jpath := "/api/sessions/" + sid + "/jobs/" + st["job"].(string)
	events := c.stream(sid, st["job"].(string))
	first := <-events // the stream is open: let the job go on
	waitFor(t, g.reached, "the job to start")
	if r := c.do("GET", jpath+"/mask.nii.gz", nil); r.status != http.StatusConflict {
		t.Fatalf("mask of a running job: %d, want 409", r.status)
	}
	close(g.release)
	evs := []sseEvent{first}
	for e := range events {
		evs = append(evs, e)
	}
	checkEvents(t, evs, c.sends)

	r := c.do("GET", jpath+"/mask.nii.gz", nil)
	mask, err := data.ReadLabels("mask", bytes.NewReader(r.body), data.DefaultLimits)
	if err != nil {
		t.Fatalf("mask: %d %v", r.status, err)
	}
	if mask.Affine != back.Affine || mask.SameGrid(&p.g, 1e-6) != nil {
		t.Fatalf("mask affine %v, image %v", mask.Affine, back.Affine)
	}
	if cd := r.header.Get("Content-Disposition"); cd != `attachment; filename="ct_mask.nii.gz"` {
		t.Errorf("Content-Disposition %q", cd)
	}
	want := directRun(t, p, ann)
	if !slices.Equal(mask.Data, want.Labels) {
		t.Fatal("the served mask differs from infer.Job.Run's on the same input")
	}
	end := evs[len(evs)-1].data
	if end["first"] != float64(want.First) || end["last"] != float64(want.Last) {
		t.Fatalf("done event %v, Run's range %d..%d", end, want.First, want.Last)
	}
}

// checkEvents: progress events (done never decreasing, at most 20 a second), then done.
func checkEvents(t *testing.T, evs []sseEvent, sends *sendLog) {
	t.Helper()
	last := evs[len(evs)-1]
	if last.name != "done" {
		t.Fatalf("last event %v, want done", last)
	}
	prev, progress := -1.0, 0
	for _, e := range evs[:len(evs)-1] {
		if e.name != "progress" {
			t.Fatalf("event %v before the end", e)
		}
		d := e.data["done"].(float64)
		if d < prev {
			t.Fatalf("progress went back: %v", evs)
		}
		prev = d
		progress++
	}
	if prev <= 0 || prev != evs[len(evs)-2].data["total"].(float64) {
		t.Fatalf("the last progress event is not complete: %v", evs)
	}
	// The server wrote the progress events at least minEventGap apart, except the complete
	// one a finished job sends at once. The gaps are measured where the server writes, so a
	// loaded machine that delays the client cannot make this pass or fail.
	at := sends.progressTimes()
	if len(at) != progress {
		t.Fatalf("the server wrote %d progress events, the client read %d", len(at), progress)
	}
	for i := 1; i < len(at)-1; i++ {
		if gap := at[i].Sub(at[i-1]); gap < minEventGap {
			t.Fatalf("progress events %d and %d written %v apart: not throttled to 20/s", i-1, i, gap)
		}
	}
}

// directRun is infer.Job.Run on the same bytes the server got, outside the server.
func directRun(t *testing.T, p phantom, ann []byte) *infer.Result {
	j := testJob(t)
	img, err := data.ReadImage("img", bytes.NewReader(p.niiGz(t)), data.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	lab, err := data.ReadLabels("ann", bytes.NewReader(ann), data.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	prep, err := j.Prepare(img)
	if err != nil {
		t.Fatal(err)
	}
	anns, err := data.FindAnnotations(lab, prep.Slicer)
	if err != nil {
		t.Fatal(err)
	}
	res, err := j.Run(prep, infer.Request{Annotations: anns})
	if err != nil {
		t.Fatal(err)
	}
	return res
}
