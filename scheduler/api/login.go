package api

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// LoginRequest is the body of POST /api/login, as Elastic-Job-Cloud 3.x's
// console sends it.
type LoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// LoginResponse is its answer: a token to send as the accessToken header
// (or Authorization: Bearer) until it expires.
type LoginResponse struct {
	AccessToken string `json:"accessToken"`
	// ExpiresIn is the token's lifetime in seconds.
	ExpiresIn int64 `json:"expiresIn"`
}

// login exchanges a user and password for an access token of this process.
// Failures count towards the client IP's limit like any wrong credentials.
func (s *server) login(c *call) (any, error) {
	var req LoginRequest
	dec := json.NewDecoder(bytes.NewReader(c.body))
	if err := dec.Decode(&req); err != nil {
		return nil, &badRequestError{field: "body", err: fmt.Errorf("the body must be {\"username\":…,\"password\":…}: %w", err)}
	}
	ip := clientIP(c.r)
	who := principal{role: roleAdmin}
	if s.authEnabled() {
		if wait := s.limiter.blocked(ip); wait > 0 {
			return nil, tooManyFailures(wait)
		}
		var ok bool
		if who, ok = s.checkPassword(req.Username, req.Password); !ok {
			s.limiter.fail(ip)
			return nil, ErrUnauthenticated
		}
		who.token = true
	}
	c.who = who
	tok, err := s.tokens.issue(who)
	if err != nil {
		return nil, fmt.Errorf("issue a token: %w", err)
	}
	return LoginResponse{AccessToken: tok, ExpiresIn: int64(s.cfg.TokenTTL.Seconds())}, nil
}
