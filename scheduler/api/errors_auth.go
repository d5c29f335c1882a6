package api

import "errors"

// Refusals of the API's own, each mapped to one 4xx by writeError. They are
// sentinels so that callers and tests match them with errors.Is; the
// messages say what to do about them.
var (
	// ErrUnauthenticated: the request needs credentials and carries none,
	// or wrong ones (401).
	ErrUnauthenticated = errors.New("valid credentials are needed (HTTP Basic auth, or a token from POST /api/login as the accessToken header or Authorization: Bearer)")
	// ErrForbidden: the credentials are valid but their role may not do
	// this (403).
	ErrForbidden = errors.New("these credentials may not do this (a read-only account may only read)")
	// ErrCrossOrigin: a browser sent a write from another site (403).
	ErrCrossOrigin = errors.New("cross-origin writes are refused: the request's Origin (or Sec-Fetch-Site) says it comes from another site")
	// ErrUnsupportedMediaType: a write's body is not declared as JSON
	// (415).
	ErrUnsupportedMediaType = errors.New("a request body must be sent with Content-Type: application/json")
	// ErrInsecureForward: forwarding would send credentials over plain
	// http to a leader on another host (503: nothing the client can fix).
	ErrInsecureForward = errors.New("refusing to forward credentials over plain http to a leader on another host; serve the API over TLS (--tls-cert) or allow it with --insecure-plain-http-forwarding")
)
