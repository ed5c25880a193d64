package serve

import (
	"net/http"
	"sync"
	"testing"
)

// Two sessions working at once see only their own volumes and jobs: every path naming the
// other's ids answers 404, and both sessions' jobs complete.
func TestSessionsIsolated(t *testing.T) {
	_, c := start(t, Options{})
	p := newPhantom(3)
	n := largestSlice(p, 1)
	type work struct{ sid, vid, jid string }
	var ws [2]work
	var wg sync.WaitGroup
	for i := range ws {
		wg.Add(1)
		go func() { // each session uploads and starts its job concurrently
			defer wg.Done()
			sid := c.session()
			vid := c.upload(sid, "v.nii.gz", p.niiGz(t))["volume"].(string)
			jid := c.must(http.StatusAccepted, "POST", "/api/sessions/"+sid+"/volumes/"+vid+"/jobs", p.annotation(t, n))["job"].(string)
			ws[i] = work{sid, vid, jid}
		}()
	}
	wg.Wait()
	a, b := ws[0], ws[1]
	for _, w := range ws {
		if st := c.wait(w.sid, w.jid); st["state"] != "done" {
			t.Fatalf("job of session %s: %v", w.sid, st)
		}
	}
	// b's session with a's ids.
	vol, job := "/api/sessions/"+b.sid+"/volumes/"+a.vid, "/api/sessions/"+b.sid+"/jobs/"+a.jid
	for _, rq := range []struct{ method, path string }{
		{"GET", vol}, {"GET", vol + "/image.nii.gz"}, {"POST", vol + "/jobs"}, {"DELETE", vol},
		{"GET", job}, {"GET", job + "/events"}, {"GET", job + "/mask.nii.gz"}, {"DELETE", job},
		{"GET", "/api/sessions/" + a.sid[:31] + "0"},
	} {
		r := c.do(rq.method, rq.path, p.annotation(t, n))
		if r.status != http.StatusNotFound || r.json(t)["error"] == "" {
			t.Errorf("%s %s from another session: %d %s, want 404", rq.method, rq.path, r.status, r.body)
		}
	}
	got := c.must(http.StatusOK, "GET", "/api/sessions/"+b.sid, nil)
	if vs := got["volumes"].([]any); len(vs) != 1 || vs[0].(map[string]any)["volume"] != b.vid {
		t.Fatalf("session b lists %v", got["volumes"])
	}
	// a's work is untouched.
	c.must(http.StatusOK, "GET", "/api/sessions/"+a.sid+"/jobs/"+a.jid+"/mask.nii.gz", nil)
	c.must(http.StatusNoContent, "DELETE", "/api/sessions/"+a.sid, nil)
	c.must(http.StatusNotFound, "GET", "/api/sessions/"+a.sid+"/volumes/"+a.vid, nil)
	c.must(http.StatusOK, "GET", "/api/sessions/"+b.sid+"/volumes/"+b.vid, nil)
}

// A job cancelled mid-way ends cancelled (its event stream says so) and frees the worker: the
// job queued behind it runs to done. A queued job cancelled never starts.
func TestCancelFreesSlot(t *testing.T) {
	job, g := gatedJob(t, 4)
	s, c := start(t, Options{Job: job})
	p := newPhantom(5)
	n := largestSlice(p, 1)
	sid := c.session()
	vpath := "/api/sessions/" + sid + "/volumes/" + c.upload(sid, "v.nii.gz", p.niiGz(t))["volume"].(string)
	post := func() string {
		return c.must(http.StatusAccepted, "POST", vpath+"/jobs", p.annotation(t, n))["job"].(string)
	}
	jpath := func(id string) string { return "/api/sessions/" + sid + "/jobs/" + id }
	first := post()
	waitFor(t, g.reached, "the first job to reach its 4th slice")
	second, third := post(), post()
	if st := c.must(http.StatusOK, "GET", jpath(first), nil); st["state"] != "running" || st["done"].(float64) < 1 {
		t.Fatalf("first job mid-way: %v", st)
	}
	events := c.stream(sid, first)
	c.must(http.StatusNoContent, "DELETE", jpath(first), nil)
	c.must(http.StatusNoContent, "DELETE", jpath(third), nil) // queued: never starts
	close(g.release)
	var last sseEvent
	for e := range events {
		last = e
	}
	if last.name != "cancelled" {
		t.Fatalf("first job's stream ended with %v, want cancelled", last)
	}
	st := c.wait(sid, first)
	if st["state"] != "cancelled" || st["done"].(float64) >= st["total"].(float64) {
		t.Fatalf("cancelled job: %v", st)
	}
	if st := c.wait(sid, second); st["state"] != "done" {
		t.Fatalf("job behind the cancelled one: %v", st)
	}
	if st := c.wait(sid, third); st["state"] != "cancelled" || st["total"] != 0.0 {
		t.Fatalf("cancelled queued job: %v", st)
	}
	c.must(http.StatusConflict, "GET", jpath(first)+"/mask.nii.gz", nil)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active != 0 || len(s.queue) != 0 {
		t.Fatalf("after the jobs: %d active, %d queued", s.active, len(s.queue))
	}
	for _, id := range []string{first, third} {
		if j := s.sessions[sid].jobs[id]; j.anns != nil || j.mask != nil {
			t.Fatalf("cancelled job %s still holds its annotations or a mask", id)
		}
	}
}
