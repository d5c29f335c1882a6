package api

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// maxForwardedResponse caps what is relayed of a leader's answer.
const maxForwardedResponse = 16 << 20

// forwardedRequestHeaders are the request headers a forwarded write keeps.
// The credentials are not among them: the caller's were checked here, and
// the leader gets the cluster's admin credentials instead (a token from
// POST /api/login is only known to the process that issued it).
var forwardedRequestHeaders = []string{"Content-Type", "Accept", "User-Agent"}

// forwardedResponseHeaders are the leader's response headers relayed back.
var forwardedResponseHeaders = []string{"Content-Type", "Retry-After", "WWW-Authenticate", "Allow", "X-Content-Type-Options"}

// forwardToLeader sends a write this process may not serve to the leader,
// with its method, path, query, body and credentials, and relays the answer.
// It never forwards a request that was forwarded already: the leader that
// sent it here has just lost its term, and the client had better retry.
func (s *server) forwardToLeader(w http.ResponseWriter, c *call) {
	r := c.r
	if r.Header.Get(HeaderForwarded) != "" {
		s.writeError(w, r, &unavailableError{msg: "this process is not the leader and the request was already forwarded once (the leadership is changing); retry"})
		return
	}
	st, err := s.svc.Status(c.ctx)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("not the leader, and cannot tell who is: %w", err))
		return
	}
	leader := st.LeaderAddress
	if leader == "" || leader == st.Self {
		s.writeError(w, r, &unavailableError{msg: "this process is not the leader and no other process leads at the moment; retry"})
		return
	}
	base := leaderURL(leader, s.cfg.ForwardHTTPS)
	if err := s.checkForwardTarget(base); err != nil {
		s.writeError(w, r, err)
		return
	}
	c.forwardedTo = leader
	target := base + r.URL.RequestURI()
	req, err := http.NewRequestWithContext(c.ctx, r.Method, target, bytes.NewReader(c.body))
	if err != nil {
		s.writeError(w, r, &unavailableError{msg: fmt.Sprintf("the leader's address %q is not usable: %v", leader, err)})
		return
	}
	for _, h := range forwardedRequestHeaders {
		if v := r.Header.Values(h); len(v) > 0 {
			req.Header[h] = v
		}
	}
	if s.authEnabled() {
		req.SetBasicAuth(s.cfg.AuthUser, s.cfg.AuthPassword)
	}
	req.Header.Set(HeaderForwarded, "1")
	// Only the address this process saw: what the client claims in its
	// own X-Forwarded-For is nobody's to vouch for.
	req.Header.Set("X-Forwarded-For", clientIP(r))

	s.log.Debug("forwarding a write to the leader", "method", r.Method, "path", r.URL.Path, "leader", leader)
	resp, err := s.forward.Do(req)
	if err != nil {
		msg := redactText(err.Error())
		s.log.Warn("forwarding a write to the leader failed", "method", r.Method, "path", r.URL.Path, "leader", leader, "error", msg)
		s.writeError(w, r, &unavailableError{msg: fmt.Sprintf("this process is not the leader, and the leader at %s did not answer: %s", leader, msg)})
		return
	}
	defer resp.Body.Close()
	for _, h := range forwardedResponseHeaders {
		if v := resp.Header.Values(h); len(v) > 0 {
			w.Header()[h] = v
		}
	}
	w.Header().Set(HeaderLeader, leader)
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, io.LimitReader(resp.Body, maxForwardedResponse)); err != nil {
		s.log.Debug("relaying the leader's answer failed", "leader", leader, "error", err)
	}
}

// leaderURL turns an advertised address (host:port, or a URL) into a base
// URL without a trailing slash: https:// for host:port if https.
func leaderURL(addr string, https bool) string {
	if strings.Contains(addr, "://") {
		return strings.TrimSuffix(addr, "/")
	}
	if https {
		return "https://" + addr
	}
	return "http://" + addr
}

// checkForwardTarget refuses to send credentials in clear text to another
// host: over plain http anyone on the path would read the admin password.
// Loopback is this host; InsecureForwarding is the operator saying so.
func (s *server) checkForwardTarget(base string) error {
	if !s.authEnabled() || s.cfg.InsecureForwarding {
		return nil
	}
	u, err := url.Parse(base)
	if err != nil {
		return &unavailableError{msg: fmt.Sprintf("the leader's address %q is not usable: %v", base, err)}
	}
	if u.Scheme == "https" || isLoopbackHost(u.Hostname()) {
		return nil
	}
	return ErrInsecureForward
}

// isLoopbackHost says whether host is this machine for certain: a loopback
// IP or "localhost". Any other name may resolve elsewhere.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
