package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
)

// authorized says whether a write may proceed: always when no credentials
// are configured, otherwise only with the configured Basic credentials.
// Both parts are compared, in constant time, whatever the first one gave.
func (s *server) authorized(r *http.Request) bool {
	if s.cfg.AuthUser == "" {
		return true
	}
	user, password, ok := r.BasicAuth()
	if !ok {
		return false
	}
	userOK := equalConstantTime(user, s.cfg.AuthUser)
	passwordOK := equalConstantTime(password, s.cfg.AuthPassword)
	return userOK&passwordOK == 1
}

// equalConstantTime compares digests, so that neither the content nor the
// length of the secret shows in the time taken.
func equalConstantTime(got, want string) int {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:])
}
