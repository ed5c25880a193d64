package serve

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"strings"
)

// tokenCookie carries the token for what the page loads by plain URL (its scripts and
// styles): set when the page itself is opened with ?token=, SameSite=Strict so that another
// site's requests never carry it.
const tokenCookie = "sli2vol_token"

// NeedsToken reports whether addr (host:port) listens beyond the loopback interface: an empty
// host, a wildcard, a name other than localhost, or a non-loopback IP.
func NeedsToken(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return true
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// NewToken is a random 128-bit token, hex.
func NewToken() string { return newID() }

// newID is a random 128-bit id, hex: session, volume and job ids cannot be guessed.
func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("serve: crypto/rand: " + err.Error()) // the OS has no randomness: nothing is safe
	}
	return hex.EncodeToString(b[:])
}

// checkToken accepts a request carrying the server's token as "Authorization: Bearer T", as
// the query parameter token=T (EventSource and downloads cannot set headers) or as the
// cookie; compared in constant time. Opening a page URL with ?token= sets the cookie.
func (s *Server) checkToken(w http.ResponseWriter, r *http.Request) error {
	want := s.opts.Token
	if want == "" {
		return nil
	}
	match := func(got string) bool { return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1 }
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok && match(t) {
			return nil
		}
		return fail(http.StatusUnauthorized, "wrong token")
	}
	if q := r.URL.Query().Get("token"); q != "" {
		if !match(q) {
			return fail(http.StatusUnauthorized, "wrong token")
		}
		if !strings.HasPrefix(r.URL.Path, "/api/") {
			http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: q, Path: "/", HttpOnly: true,
				SameSite: http.SameSiteStrictMode})
		}
		return nil
	}
	if c, err := r.Cookie(tokenCookie); err == nil && match(c.Value) {
		return nil
	}
	return fail(http.StatusUnauthorized, "this server needs its token: Authorization: Bearer TOKEN, or ?token=TOKEN")
}

// cors adds the CORS headers for the configured origin (none without one) and answers a
// preflight; it reports whether the request was answered. A preflight carries no token, so
// it is answered before the token check; it grants nothing by itself.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if s.opts.CORSOrigin == "" || origin != s.opts.CORSOrigin {
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
		return false
	}
	h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
	return true
}
