package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
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
	req, err := s.leaderRequest(c, base, s.authEnabled())
	if err != nil {
		s.writeError(w, r, &unavailableError{msg: fmt.Sprintf("the leader's address %q is not usable: %v", leader, err)})
		return
	}

	s.log.Debug("forwarding a write to the leader", "method", r.Method, "path", r.URL.Path, "leader", leader)
	resp, err := s.forward.Do(req)
	if err != nil {
		msg := redactText(err.Error())
		s.log.Warn("forwarding a write to the leader failed", "method", r.Method, "path", r.URL.Path, "leader", leader, "error", msg)
		s.writeError(w, r, &unavailableError{msg: fmt.Sprintf("this process is not the leader, and the leader at %s did not answer: %s", leader, msg)})
		return
	}
	defer resp.Body.Close()
	s.relay(w, resp, leader, maxForwardedResponse)
}

// leaderRequest is c's request as it is forwarded to the leader at base:
// its method, path, query and body, the headers that are the request's
// own, the cluster's admin credentials if creds, and the marks of a
// forwarded request.
func (s *server) leaderRequest(c *call, base string, creds bool) (*http.Request, error) {
	r := c.r
	req, err := http.NewRequestWithContext(c.ctx, r.Method, base+r.URL.RequestURI(), bytes.NewReader(c.body))
	if err != nil {
		return nil, err
	}
	for _, h := range forwardedRequestHeaders {
		if v := r.Header.Values(h); len(v) > 0 {
			req.Header[h] = v
		}
	}
	if creds {
		req.SetBasicAuth(s.cfg.AuthUser, s.cfg.AuthPassword)
	}
	req.Header.Set(HeaderForwarded, "1")
	// Only the address this process saw: what the client claims in its
	// own X-Forwarded-For is nobody's to vouch for.
	req.Header.Set("X-Forwarded-For", clientIP(r))
	return req, nil
}

// relay writes the leader's answer as this process's, up to limit bytes
// of its body.
func (s *server) relay(w http.ResponseWriter, resp *http.Response, leader string, limit int64) {
	for _, h := range forwardedResponseHeaders {
		if v := resp.Header.Values(h); len(v) > 0 {
			w.Header()[h] = v
		}
	}
	w.Header().Set(HeaderLeader, leader)
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, io.LimitReader(resp.Body, limit)); err != nil {
		s.log.Debug("relaying the leader's answer failed", "leader", leader, "error", err)
	}
}

// readHeaderWait bounds how long a standby waits for the leader's answer
// to a forwarded read to begin, so that a leader that takes the request
// but does not answer leaves the standby time to read the store.
const readHeaderWait = 10 * time.Second

// maxForwardedRead caps what is relayed of the leader's answer to a
// read: far above any list's (100,000 jobs are some 35 MB), so that it
// only bounds a peer gone wrong.
const maxForwardedRead = 1 << 30

// forwardRead serves a standby's read of configurations by the leader,
// which answers from memory (the store's lists take seconds at 100,000
// jobs) and has every write it acknowledged: a client reading through
// any process sees its own acknowledged writes, as it would on the
// leader. It returns false, having written nothing, when the read is this
// process's to serve from the store instead: it leads, or nobody does
// (that it knows of), or the request was forwarded to it already (its
// sender thought it led), or the leader's reads need credentials that may
// not go to it in clear text (see checkForwardTarget), or the leader did
// not answer with the read's answer (it did not answer at all, failed, or
// refused the credentials). The store has every acknowledged write too
// (the leader writes it before it acknowledges), so the fallback costs
// time, not consistency.
func (s *server) forwardRead(w http.ResponseWriter, c *call) bool {
	r := c.r
	if r.Header.Get(HeaderForwarded) != "" {
		return false
	}
	st, err := s.svc.Status(c.ctx)
	if err != nil || st.Leader || st.LeaderAddress == "" || st.LeaderAddress == st.Self {
		return false
	}
	leader := st.LeaderAddress
	base := leaderURL(leader, s.cfg.ForwardHTTPS)
	// Reads need the credentials only if the cluster guards them.
	creds := s.cfg.AuthReads
	if creds {
		if err := s.checkForwardTarget(base); err != nil {
			s.log.Debug("serving a read from the store: it may not be forwarded", "path", r.URL.Path, "leader", leader, "error", err)
			return false
		}
	}
	// The answer must begin within s.readHeaderWait; the body then has the
	// request's time.
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	late := time.AfterFunc(s.readHeaderWait, cancel)
	fc := *c
	fc.ctx = ctx
	req, err := s.leaderRequest(&fc, base, creds)
	if err != nil {
		late.Stop()
		s.log.Debug("serving a read from the store: the leader's address is not usable", "leader", leader, "error", err)
		return false
	}
	resp, err := s.forward.Do(req)
	if !late.Stop() && err == nil {
		// The timer fired as the answer came: the body would be cut.
		resp.Body.Close()
		err = fmt.Errorf("no answer within %v", s.readHeaderWait)
	}
	if err != nil {
		s.log.Warn("forwarding a read to the leader failed; serving it from the store", "path", r.URL.Path, "leader", leader, "error", redactText(err.Error()))
		return false
	}
	defer resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= http.StatusInternalServerError, code == http.StatusUnauthorized, code == http.StatusForbidden, code == http.StatusTooManyRequests:
		s.log.Warn("the leader did not serve a forwarded read; serving it from the store", "path", r.URL.Path, "leader", leader, "status", code)
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return false
	}
	c.forwardedTo = leader
	s.relay(w, resp, leader, maxForwardedRead)
	return true
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
