package api

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
)

// maxForwardedResponse caps what is relayed of a leader's answer.
const maxForwardedResponse = 16 << 20

// forwardedRequestHeaders are the request headers a forwarded write keeps.
var forwardedRequestHeaders = []string{"Authorization", "Content-Type", "Accept", "User-Agent"}

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
	target := leaderURL(leader) + r.URL.RequestURI()
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
	req.Header.Set(HeaderForwarded, "1")
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := r.Header.Get("X-Forwarded-For"); prior != "" {
			host = prior + ", " + host
		}
		req.Header.Set("X-Forwarded-For", host)
	}

	s.log.Debug("forwarding a write to the leader", "method", r.Method, "path", r.URL.Path, "leader", leader)
	resp, err := s.forward.Do(req)
	if err != nil {
		s.log.Warn("forwarding a write to the leader failed", "method", r.Method, "path", r.URL.Path, "leader", leader, "error", err)
		s.writeError(w, r, &unavailableError{msg: fmt.Sprintf("this process is not the leader, and the leader at %s did not answer: %v", leader, err)})
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
// URL without a trailing slash.
func leaderURL(addr string) string {
	if strings.Contains(addr, "://") {
		return strings.TrimSuffix(addr, "/")
	}
	return "http://" + addr
}
