package serve

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// minEventGap throttles progress events to at most 20 a second: a fast device finishes slices
// far quicker than a page can redraw.
const minEventGap = 50 * time.Millisecond

// eventStream writes Server-Sent Events, flushing each.
type eventStream struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (e *eventStream) send(event string, v any) error {
	b, _ := json.Marshal(v)
	if _, err := fmt.Fprintf(e.w, "event: %s\ndata: %s\n\n", event, b); err != nil {
		return err
	}
	return e.rc.Flush()
}

// handleEvents streams a job's progress and then its end (done, failed or cancelled), after
// which the stream closes. A client that goes away stops only its stream, never the job (a
// reloaded page reconnects); one connecting after the end gets the final event at once.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) error {
	s.mu.Lock()
	j, err := s.jobOf(r)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // a proxy in front must not hold the events back
	w.WriteHeader(http.StatusOK)
	e := &eventStream{w: w, rc: http.NewResponseController(w)}
	var sent jobStatus // last progress sent; State "" before the first
	var last time.Time
	for {
		s.mu.Lock()
		st, change := j.status(), j.change
		s.mu.Unlock()
		if st.State.final() {
			return s.sendEnd(e, st, sent)
		}
		if st.State != sent.State || st.Done != sent.Done || st.Total != sent.Total {
			if wait := minEventGap - time.Since(last); wait > 0 {
				change = afterClosed(wait) // send the latest state once the gap has passed
			} else if e.send("progress", progressOf(st)) != nil {
				return nil
			} else {
				sent, last = st, time.Now()
			}
		}
		select {
		case <-change:
		case <-r.Context().Done():
			return nil
		case <-s.ctx.Done():
			return nil
		}
	}
}

// afterClosed is a channel closed after d.
func afterClosed(d time.Duration) chan struct{} {
	c := make(chan struct{})
	time.AfterFunc(d, func() { close(c) })
	return c
}

func progressOf(st jobStatus) map[string]any {
	return map[string]any{"state": st.State, "done": st.Done, "total": st.Total}
}

// sendEnd sends a finished job's last progress (when the stream showed an earlier one) and
// its final event.
func (s *Server) sendEnd(e *eventStream, st jobStatus, sent jobStatus) error {
	if sent.State != "" && st.State == stateDone && sent.Done != st.Done {
		if e.send("progress", progressOf(st)) != nil {
			return nil
		}
	}
	switch st.State {
	case stateDone:
		e.send("done", map[string]int{"first": st.First, "last": st.Last})
	case stateFailed:
		e.send("failed", map[string]string{"error": st.Error})
	default:
		e.send("cancelled", struct{}{})
	}
	return nil
}
