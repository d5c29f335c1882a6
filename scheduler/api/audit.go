package api

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// AuditEntry is one write (or login) as the audit log keeps it: who, what,
// when, from where and how it ended.
type AuditEntry struct {
	Time   time.Time `json:"time"`
	User   string    `json:"user"`
	Method string    `json:"method"`
	Path   string    `json:"path"`
	App    string    `json:"app,omitempty"`
	Job    string    `json:"job,omitempty"`
	// Remote is the address of the peer that sent the request.
	Remote string `json:"remote"`
	// ForwardedFor is the client a standby forwarded the request for; it
	// is set only when the forwarding peer is trusted (see trustedHop).
	ForwardedFor string `json:"forwardedFor,omitempty"`
	// ForwardedTo is the leader this process forwarded the request to.
	ForwardedTo string `json:"forwardedTo,omitempty"`
	Status      int    `json:"status"`
}

// auditRing keeps the last entries, a fixed number of them.
type auditRing struct {
	mu   sync.Mutex
	buf  []AuditEntry
	next int
	full bool
}

func newAuditRing(size int) *auditRing { return &auditRing{buf: make([]AuditEntry, size)} }

func (a *auditRing) add(e AuditEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.buf[a.next] = e
	a.next++
	if a.next == len(a.buf) {
		a.next, a.full = 0, true
	}
}

// entries returns the kept entries, oldest first.
func (a *auditRing) entries() []AuditEntry {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.full {
		return append([]AuditEntry{}, a.buf[:a.next]...)
	}
	return append(append([]AuditEntry{}, a.buf[a.next:]...), a.buf[:a.next]...)
}

// audit records one write: a structured log line (info, or warn for a
// refusal) and an entry in the ring GET /api/audit reads.
func (s *server) audit(c *call, status int) {
	e := AuditEntry{
		Time:        s.now().UTC(),
		User:        c.who.name(),
		Method:      c.r.Method,
		Path:        redactText(c.r.URL.Path),
		App:         c.app,
		Job:         c.job,
		Remote:      c.r.RemoteAddr,
		ForwardedTo: c.forwardedTo,
		Status:      status,
	}
	if e.App == "" {
		e.App = c.params["app"]
	}
	if e.Job == "" {
		e.Job = c.params["job"]
	}
	if s.trustedHop(c) {
		e.ForwardedFor = lastForwardedFor(c.r)
	}
	s.auditLog.add(e)
	args := []any{"user", e.User, "method", e.Method, "path", e.Path, "remote", e.Remote, "status", e.Status}
	for _, kv := range [][2]string{{"app", e.App}, {"job", e.Job}, {"forwarded_for", e.ForwardedFor}, {"forwarded_to", e.ForwardedTo}} {
		if kv[1] != "" {
			args = append(args, kv[0], kv[1])
		}
	}
	if status >= 400 {
		s.log.Warn("audit", args...)
	} else {
		s.log.Info("audit", args...)
	}
}

// trustedHop says whether the request comes from another hasched process
// forwarding for a client, so that its X-Forwarded-For may be believed:
// marked with HeaderForwarded, and authenticated with the admin password
// (standbys forward with it), or, with auth off, sent from this host.
// Anybody else could write any X-Forwarded-For they like.
func (s *server) trustedHop(c *call) bool {
	if c.r.Header.Get(HeaderForwarded) == "" {
		return false
	}
	if s.authEnabled() {
		return c.who.role == roleAdmin && !c.who.token
	}
	ip := net.ParseIP(clientIP(c.r))
	return ip != nil && ip.IsLoopback()
}

// lastForwardedFor is the address the forwarding process saw: the last
// one of X-Forwarded-For.
func lastForwardedFor(r *http.Request) string {
	v := r.Header.Values("X-Forwarded-For")
	if len(v) == 0 {
		return ""
	}
	parts := strings.Split(v[len(v)-1], ",")
	return strings.TrimSpace(parts[len(parts)-1])
}

func (s *server) auditEntries(*call) (any, error) {
	return s.auditLog.entries(), nil
}
