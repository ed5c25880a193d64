package serve

import (
	"net/http"
	"sort"
	"time"

	"github.com/sli2vol/sli2vol/infer"
)

// A session is one client's workspace: its volumes and jobs are reachable only through its id.
type session struct {
	id      string
	used    time.Time // last request; expiry and eviction go by it
	volumes map[string]*volume
	jobs    map[string]*job
}

// A volume is an image prepared for propagation (slicer and window decided once).
type volume struct {
	id    string
	sess  *session
	prep  *infer.Prepared
	bytes int64 // what it holds in memory (its voxels), counted against MaxStoredBytes
	used  time.Time
	info  volumeInfo
}

// sessionOf finds the request's session ({sid}), first expiring idle sessions, and marks it
// used. s.mu must be held.
func (s *Server) sessionOf(r *http.Request) (*session, error) {
	now := s.now()
	s.expire(now)
	ss := s.sessions[r.PathValue("sid")]
	if ss == nil {
		return nil, fail(http.StatusNotFound, "no session %q (expired, evicted or never created)", r.PathValue("sid"))
	}
	ss.used = now
	return ss, nil
}

// volumeOf finds the request's volume ({vid}) in its session. s.mu must be held.
func (s *Server) volumeOf(r *http.Request) (*volume, error) {
	ss, err := s.sessionOf(r)
	if err != nil {
		return nil, err
	}
	v := ss.volumes[r.PathValue("vid")]
	if v == nil {
		return nil, fail(http.StatusNotFound, "no volume %q in this session (deleted or evicted?)", r.PathValue("vid"))
	}
	v.used = ss.used
	return v, nil
}

// expire drops sessions unused for SessionTTL, except while one of their jobs is queued or
// running (a long propagation outlives a quiet client). s.mu must be held.
func (s *Server) expire(now time.Time) {
	for _, ss := range s.sessions {
		if now.Sub(ss.used) > s.lim.SessionTTL && !busy(ss) {
			s.dropSession(ss)
		}
	}
}

func busy(ss *session) bool {
	for _, j := range ss.jobs {
		if !j.state.final() {
			return true
		}
	}
	return false
}

// dropSession cancels a session's jobs and frees its volumes. s.mu must be held.
func (s *Server) dropSession(ss *session) {
	for _, v := range ss.volumes {
		s.dropVolume(v)
	}
	for _, j := range ss.jobs {
		s.dropJob(j)
	}
	delete(s.sessions, ss.id)
}

// dropVolume cancels the volume's jobs, forgets them and frees its voxels. s.mu must be held.
func (s *Server) dropVolume(v *volume) {
	for _, j := range v.sess.jobs {
		if j.vol == v {
			s.dropJob(j)
		}
	}
	s.stored -= v.bytes
	v.prep = nil
	delete(v.sess.volumes, v.id)
}

// newSession creates a session, evicting the least recently used one at MaxSessions.
func (s *Server) newSession() *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.expire(now)
	for len(s.sessions) >= s.lim.MaxSessions {
		var oldest *session
		for _, ss := range s.sessions {
			if oldest == nil || ss.used.Before(oldest.used) {
				oldest = ss
			}
		}
		s.log.Printf("session cap (%d) reached: evicting session %s", s.lim.MaxSessions, oldest.id)
		s.dropSession(oldest)
	}
	ss := &session{id: newID(), used: now, volumes: map[string]*volume{}, jobs: map[string]*job{}}
	s.sessions[ss.id] = ss
	return ss
}

// makeRoom evicts the least recently used volumes (of any session, with their jobs and
// masks) until need more bytes fit under MaxStoredBytes. s.mu must be held.
func (s *Server) makeRoom(need int64) error {
	if need > s.lim.MaxStoredBytes {
		return fail(http.StatusRequestEntityTooLarge, "%d bytes exceed the server's storage cap of %d", need, s.lim.MaxStoredBytes)
	}
	var all []*volume
	for _, ss := range s.sessions {
		for _, v := range ss.volumes {
			all = append(all, v)
		}
	}
	sort.Slice(all, func(a, b int) bool { return all[a].used.Before(all[b].used) })
	for _, v := range all {
		if s.stored+need <= s.lim.MaxStoredBytes {
			break
		}
		s.log.Printf("storage cap (%d bytes) reached: evicting volume %s of session %s", s.lim.MaxStoredBytes, v.id, v.sess.id)
		s.dropVolume(v)
	}
	if s.stored+need > s.lim.MaxStoredBytes { // only masks of finished jobs are left
		return fail(http.StatusInsufficientStorage, "the server's storage cap of %d bytes is full", s.lim.MaxStoredBytes)
	}
	return nil
}

func (s *Server) sessionJSON(ss *session) map[string]any {
	ttl := s.lim.SessionTTL - s.now().Sub(ss.used)
	return map[string]any{"session": ss.id, "expires_in_s": int64(ttl.Seconds())}
}

func (s *Server) handleNewSession(w http.ResponseWriter, r *http.Request) error {
	ss := s.newSession()
	s.mu.Lock()
	defer s.mu.Unlock()
	writeJSON(w, http.StatusCreated, s.sessionJSON(ss))
	return nil
}

// handleGetSession lists a session's volumes and jobs (a reloaded page finds its work).
func (s *Server) handleGetSession(w http.ResponseWriter, r *http.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, err := s.sessionOf(r)
	if err != nil {
		return err
	}
	out := s.sessionJSON(ss)
	vols, jobs := []volumeInfo{}, []jobStatus{}
	for _, v := range ss.volumes {
		vols = append(vols, v.info)
	}
	for _, j := range ss.jobs {
		jobs = append(jobs, j.status())
	}
	sort.Slice(vols, func(a, b int) bool { return vols[a].Volume < vols[b].Volume })
	sort.Slice(jobs, func(a, b int) bool { return jobs[a].Job < jobs[b].Job })
	out["volumes"], out["jobs"] = vols, jobs
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleDeleteSession(w http.ResponseWriter, r *http.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, err := s.sessionOf(r)
	if err != nil {
		return err
	}
	s.dropSession(ss)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// sweeper expires idle sessions in the background, so that memory is freed without requests.
func (s *Server) sweeper() {
	defer s.wg.Done()
	t := time.NewTicker(min(s.lim.SessionTTL/4, time.Minute))
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.mu.Lock()
			s.expire(s.now())
			s.mu.Unlock()
		}
	}
}
