package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// HeaderAccessToken carries a token from POST /api/login, as
// Elastic-Job-Cloud 3.x's console and clients send it. Authorization:
// Bearer <token> is accepted too.
const HeaderAccessToken = "accessToken"

// anonymous is who made a request that carried no credentials.
const anonymous = "anonymous"

// role is what a principal may do.
type role int

const (
	roleNone role = iota
	// roleRead may read.
	roleRead
	// roleAdmin may read, write and read the audit log.
	roleAdmin
)

func (r role) String() string {
	switch r {
	case roleRead:
		return "read-only"
	case roleAdmin:
		return "admin"
	}
	return "none"
}

// principal is who a request acts for.
type principal struct {
	user string
	role role
	// token says the credentials were an access token rather than a
	// password.
	token bool
}

func (p principal) name() string {
	if p.user == "" {
		return anonymous
	}
	return p.user
}

// access is what a route needs of its caller.
type access int

const (
	// accessPublic: anyone (health, readiness, login).
	accessPublic access = iota
	// accessRead: anyone unless Config.AuthReads, then a read-only or
	// admin credential.
	accessRead
	// accessWrite and accessAdmin: the admin credential (when auth is
	// on).
	accessWrite
	accessAdmin
)

// authEnabled says whether credentials are configured at all. Without them
// every caller acts as an anonymous admin, which the serve command allows
// on loopback addresses only (unless told otherwise, loudly).
func (s *server) authEnabled() bool { return s.cfg.AuthUser != "" }

// authorize decides whether c may use a route needing need, and records
// who it acts for in c.who. Wrong credentials count towards the client
// IP's failure limit; a client over it is refused (429) before its
// credentials are even looked at.
func (s *server) authorize(c *call, need access) error {
	if !s.authEnabled() {
		c.who = principal{role: roleAdmin}
		return nil
	}
	r := c.r
	tok, basic, presented := credentialsOf(r)
	if !presented {
		if need == accessPublic || need == accessRead && !s.cfg.AuthReads {
			return nil
		}
		return ErrUnauthenticated
	}
	ip := clientIP(r)
	if wait := s.limiter.blocked(ip); wait > 0 {
		return tooManyFailures(wait)
	}
	var (
		who principal
		ok  bool
	)
	if basic {
		user, password, _ := r.BasicAuth()
		who, ok = s.checkPassword(user, password)
	} else {
		who, ok = s.tokens.lookup(tok)
	}
	if !ok {
		s.limiter.fail(ip)
		return ErrUnauthenticated
	}
	c.who = who
	switch need {
	case accessWrite, accessAdmin:
		if who.role < roleAdmin {
			return ErrForbidden
		}
	case accessRead:
		if who.role < roleRead {
			return ErrForbidden
		}
	}
	return nil
}

// credentialsOf finds a request's credentials: a token (accessToken
// header or Authorization: Bearer) or HTTP Basic ones.
func credentialsOf(r *http.Request) (token string, basic, presented bool) {
	if t := r.Header.Get(HeaderAccessToken); t != "" {
		return t, false, true
	}
	authz := r.Header.Get("Authorization")
	if authz == "" {
		return "", false, false
	}
	if scheme, rest, ok := strings.Cut(authz, " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(rest), false, true
	}
	if _, _, ok := r.BasicAuth(); ok {
		return "", true, true
	}
	// Some other scheme: credentials, but none that can be right.
	return "", false, true
}

// checkPassword checks a user and password against both accounts. Every
// comparison is made, in constant time, whatever the earlier ones gave, so
// the time taken tells nothing about which part was wrong.
func (s *server) checkPassword(user, password string) (principal, bool) {
	admin := equalConstantTime(user, s.cfg.AuthUser) & equalConstantTime(password, s.cfg.AuthPassword)
	reader := 0
	if s.cfg.ReadOnlyUser != "" {
		reader = equalConstantTime(user, s.cfg.ReadOnlyUser) & equalConstantTime(password, s.cfg.ReadOnlyPassword)
	}
	switch {
	case admin == 1:
		return principal{user: user, role: roleAdmin}, true
	case reader == 1:
		return principal{user: user, role: roleRead}, true
	}
	return principal{}, false
}

// equalConstantTime compares digests, so that neither the content nor the
// length of the secret shows in the time taken.
func equalConstantTime(got, want string) int {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:])
}

func tooManyFailures(wait time.Duration) error {
	return &rateLimitError{
		msg:        fmt.Sprintf("too many failed authentications from this address; retry in %v", wait.Round(time.Second)),
		retryAfter: wait,
	}
}
