package serve

import (
	"fmt"

	"github.com/sli2vol/sli2vol/infer"
)

// The device's worker: one goroutine runs the jobs one at a time in the order they were
// queued, because one model's libtorch work must not run concurrently (infer.Propagator.Run
// pins the OS thread it runs on).

func (s *Server) worker() {
	defer s.wg.Done()
	for {
		j, prep := s.next()
		if j == nil {
			select {
			case <-s.ctx.Done():
				return
			case <-s.wake:
			}
			continue
		}
		res, err := s.propagate(j, prep)
		s.finish(j, prep, res, err)
	}
}

// next takes the first queued job off the queue and marks it running (cancelled jobs have
// left the queue already).
func (s *Server) next() (*job, *infer.Prepared) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return nil, nil
	}
	j := s.queue[0]
	s.queue = s.queue[1:]
	j.state = stateRunning
	j.notify()
	return j, j.vol.prep
}

// propagate runs the job; a panic (a bug, not a bad input) fails the job, not the server.
func (s *Server) propagate(j *job, prep *infer.Prepared) (res *infer.Result, err error) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Printf("job %s panicked: %v", j.id, v)
			res, err = nil, fmt.Errorf("internal error: %v", v)
		}
	}()
	if prep == nil || j.ctx.Err() != nil { // the volume went while the job waited
		return nil, j.ctx.Err()
	}
	return s.opts.Job.Run(prep, infer.Request{Annotations: j.anns, Ctx: j.ctx,
		Progress: func(done, total int) { s.progress(j, done, total) }})
}

func (s *Server) progress(j *job, done, total int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j.done, j.total = done, total
	j.notify()
}

// finish records a job's end: cancelled when its context ended (whatever Run returned),
// failed on an error, else done with its mask stored (making room like a new volume).
func (s *Server) finish(j *job, prep *infer.Prepared, res *infer.Result, err error) {
	var mask []byte
	if err == nil && j.ctx.Err() == nil {
		mask, err = encodeMask(res.Labels, &prep.Image.Geometry)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active--
	j.anns = nil
	defer j.notify()
	defer j.cancel()
	switch {
	case j.ctx.Err() != nil:
		j.state = stateCancelled
		return
	case err != nil:
		j.state, j.err = stateFailed, oneLine(err.Error())
		return
	}
	j.vol.used = s.now() // its own volume is the last to make room for its mask
	if err := s.makeRoom(int64(len(mask))); err != nil {
		j.state, j.err = stateFailed, oneLine(err.Error())
		return
	}
	if j.sess.jobs[j.id] != j { // evicted with its volume meanwhile
		j.state = stateCancelled
		return
	}
	j.state, j.mask, j.first, j.last = stateDone, mask, res.First, res.Last
	j.done = j.total
	s.stored += int64(len(mask))
}
