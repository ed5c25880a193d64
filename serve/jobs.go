package serve

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/infer"
)

// jobState is where a job is in its life: queued → running → done | failed | cancelled
// (a queued job may go straight to cancelled).
type jobState string

const (
	stateQueued    jobState = "queued"
	stateRunning   jobState = "running"
	stateDone      jobState = "done"
	stateFailed    jobState = "failed"
	stateCancelled jobState = "cancelled"
)

func (st jobState) final() bool {
	return st == stateDone || st == stateFailed || st == stateCancelled
}

// A job is one propagation of a volume's annotated slices. Its fields are guarded by Server.mu.
type job struct {
	id     string
	sess   *session
	vol    *volume
	anns   []*data.Annotation // freed when the job ends
	ctx    context.Context
	cancel context.CancelFunc
	state  jobState
	done   int
	total  int
	first  int
	last   int
	err    string
	mask   []byte        // the result, gzipped NIfTI, counted against MaxStoredBytes
	change chan struct{} // closed (and replaced) at every change: wakes event streams
}

// jobStatus is a job as the API reports it; first and last are −1 until it is done.
type jobStatus struct {
	Job    string   `json:"job"`
	Volume string   `json:"volume"`
	State  jobState `json:"state"`
	Done   int      `json:"done"`
	Total  int      `json:"total"`
	First  int      `json:"first"`
	Last   int      `json:"last"`
	Error  string   `json:"error,omitempty"`
}

func (j *job) status() jobStatus {
	return jobStatus{Job: j.id, Volume: j.vol.id, State: j.state, Done: j.done, Total: j.total,
		First: j.first, Last: j.last, Error: j.err}
}

// notify wakes whoever waits on the job's changes. s.mu must be held.
func (j *job) notify() {
	close(j.change)
	j.change = make(chan struct{})
}

// jobOf finds the request's job ({jid}) in its session. s.mu must be held.
func (s *Server) jobOf(r *http.Request) (*job, error) {
	ss, err := s.sessionOf(r)
	if err != nil {
		return nil, err
	}
	j := ss.jobs[r.PathValue("jid")]
	if j == nil {
		return nil, fail(http.StatusNotFound, "no job %q in this session", r.PathValue("jid"))
	}
	return j, nil
}

// handleNewJob reads a label volume on the volume's grid; each labelled slice is an
// annotation. The job is queued for the device's worker: 202 at once.
func (s *Server) handleNewJob(w http.ResponseWriter, r *http.Request) error {
	s.mu.Lock()
	v, err := s.volumeOf(r)
	var prep *infer.Prepared
	if err == nil {
		prep = v.prep
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	body, err := s.limitBody(w, r)
	if err != nil {
		return err
	}
	lab, err := data.ReadLabels("annotation", body, data.Limits{MaxVoxels: s.lim.MaxVoxels})
	if err := body.check(err); err != nil {
		return err
	}
	if err := prep.Image.SameGrid(&lab.Geometry, 1e-3); err != nil {
		return fail(http.StatusBadRequest, "annotation: not on the grid of volume %s: %w", v.info.Name, err)
	}
	anns, err := data.FindAnnotations(lab, prep.Slicer)
	if err != nil {
		return err
	}
	j, err := s.enqueue(r, v, anns)
	if err != nil {
		return err
	}
	annotated := make([]int, len(anns))
	for i, a := range anns {
		annotated[i] = a.Slice
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"job": j.id, "annotated_slices": annotated})
	return nil
}

// enqueue queues a job for v, unless v went meanwhile or the queue is full.
func (s *Server) enqueue(r *http.Request, v *volume, anns []*data.Annotation) (*job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, err := s.volumeOf(r); err != nil || cur != v {
		return nil, fail(http.StatusNotFound, "volume %q was deleted or evicted meanwhile", v.id)
	}
	if s.ctx.Err() != nil {
		return nil, fail(http.StatusServiceUnavailable, "the server is shutting down")
	}
	if s.active >= s.lim.MaxQueuedJobs {
		return nil, fail(http.StatusTooManyRequests, "%d jobs are queued or running: try again later", s.active)
	}
	j := &job{id: newID(), sess: v.sess, vol: v, anns: anns, state: stateQueued, first: -1, last: -1,
		change: make(chan struct{})}
	j.ctx, j.cancel = context.WithCancel(s.ctx)
	v.sess.jobs[j.id] = j
	s.queue = append(s.queue, j)
	s.active++
	select {
	case s.wake <- struct{}{}:
	default: // the worker is already due to look
	}
	return j, nil
}

// cancelJob stops a queued or running job: a queued one is taken off the queue (it never
// starts) and freed now, a running one stops before its next slice. s.mu must be held.
func (s *Server) cancelJob(j *job) {
	j.cancel()
	if j.state != stateQueued {
		return // running: the worker ends it; final: nothing to stop
	}
	s.queue = slices.DeleteFunc(s.queue, func(q *job) bool { return q == j })
	s.active--
	j.state, j.anns = stateCancelled, nil
	j.notify()
}

// dropJob cancels a job and forgets it, freeing its mask. s.mu must be held.
func (s *Server) dropJob(j *job) {
	s.cancelJob(j)
	s.stored -= int64(len(j.mask))
	j.mask = nil
	delete(j.sess.jobs, j.id)
}

func (s *Server) handleGetJob(w http.ResponseWriter, r *http.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, err := s.jobOf(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, j.status())
	return nil
}

// handleDeleteJob cancels a queued or running job (it stays, cancelled, for its status) and
// forgets a finished one (freeing its mask).
func (s *Server) handleDeleteJob(w http.ResponseWriter, r *http.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, err := s.jobOf(r)
	if err != nil {
		return err
	}
	if j.state.final() {
		s.dropJob(j)
	} else {
		s.cancelJob(j)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleMask sends the result: gzipped NIfTI labels on the input's grid; 409 until done.
func (s *Server) handleMask(w http.ResponseWriter, r *http.Request) error {
	s.mu.Lock()
	j, err := s.jobOf(r)
	var mask []byte
	var name string
	if err == nil {
		mask, name = j.mask, j.vol.info.Name
		if j.state != stateDone {
			err = fail(http.StatusConflict, "job %s is %s: no mask", j.id, j.state)
		}
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", maskName(name)))
	w.Write(mask)
	return nil
}

// maskName is the download's file name: the volume's, with _mask.nii.gz for its extension.
func maskName(volume string) string {
	base := volume[strings.LastIndex(strings.TrimSuffix(volume, "/"), "/")+1:]
	base = strings.TrimSuffix(base, "/")
	for _, ext := range []string{".nii.gz", ".nii", ".zip"} {
		if strings.HasSuffix(strings.ToLower(base), ext) {
			base = base[:len(base)-len(ext)]
			break
		}
	}
	base = strings.Map(func(c rune) rune {
		if c < ' ' || c == '"' || c == '\\' || c > '~' {
			return '_'
		}
		return c
	}, base)
	if base == "" {
		base = "volume"
	}
	return base + "_mask.nii.gz"
}

// encodeMask is a result as gzipped NIfTI on the input's grid with its header geometry.
func encodeMask(labels []int32, g *data.Geometry) ([]byte, error) {
	var b bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed)
	if err := data.EncodeLabels(gz, labels, g); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
