package api

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// route is one endpoint. Its pattern's segments are literals or "{name}"
// parameters, which match one non-empty segment.
//
// The API has its own small router, not http.ServeMux, because
// Elastic-Job-Cloud's paths overlap in ways ServeMux refuses to register
// (GET /api/job/jobs/{job} and GET /api/job/{job}/disable both match
// /api/job/jobs/disable), and because 404 and 405 must be JSON.
type route struct {
	method  string
	pattern []string
	// write routes need the admin credential (if auth is on), a same-origin
	// caller and a JSON body (if any); they are audited and forwarded to the
	// leader.
	write bool
	// local routes are writes served by every process, never forwarded
	// (POST /api/login: tokens are per process).
	local bool
	// leaderRead routes are reads a standby forwards to the leader,
	// serving them itself if it cannot (forwardRead).
	leaderRead bool
	access     access
	handle     func(*call) (any, error)
	// raw, if set, writes the response itself in place of handle, in a
	// format of its own (GET /metrics: Prometheus' text), after the same
	// access checks.
	raw http.Handler
	// stream, if set, writes a long answer itself in place of handle
	// (task logs, logs.go), after the same access checks, bounded by
	// Config.LogStreamMax instead of RequestTimeout.
	stream func(http.ResponseWriter, *call)
}

func newRoute(method, pattern string, handle func(*call) (any, error)) route {
	rt := route{
		method:  method,
		pattern: strings.Split(strings.Trim(pattern, "/"), "/"),
		write:   method != http.MethodGet,
		access:  accessRead,
		handle:  handle,
	}
	if rt.write {
		rt.access = accessWrite
	}
	return rt
}

// newRawRoute is a GET route served by h (see route.raw).
func newRawRoute(pattern string, h http.Handler) route {
	rt := newRoute(http.MethodGet, pattern, nil)
	rt.raw = h
	return rt
}

// newStreamRoute is a GET route served by h (see route.stream).
func newStreamRoute(pattern string, h func(http.ResponseWriter, *call)) route {
	rt := newRoute(http.MethodGet, pattern, nil)
	rt.stream = h
	return rt
}

// withAccess returns the route needing a in place of its method's default.
func (rt route) withAccess(a access) route {
	rt.access = a
	return rt
}

// readFromLeader returns the route marked leaderRead.
func (rt route) readFromLeader() route {
	rt.leaderRead = true
	return rt
}

// servedLocally returns the route marked local (see route.local).
func (rt route) servedLocally() route {
	rt.local = true
	return rt
}

// match finds the route for a request. With several candidates the one with
// a literal where the others have a parameter, leftmost first, wins (as in
// Jersey). If the path matches but no route takes the method, it returns the
// methods that would have been accepted.
func (s *server) match(method string, u *url.URL) (*route, map[string]string, []string) {
	segs, ok := splitPath(u)
	if !ok {
		return nil, nil, nil
	}
	if method == http.MethodHead {
		method = http.MethodGet
	}
	var best *route
	var allow []string
	for i := range s.routes {
		rt := &s.routes[i]
		if !rt.matches(segs) {
			continue
		}
		if rt.method != method {
			if !slices.Contains(allow, rt.method) {
				allow = append(allow, rt.method)
			}
			continue
		}
		if best == nil || rt.moreSpecific(best) {
			best = rt
		}
	}
	if best == nil {
		return nil, nil, allow
	}
	params := map[string]string{}
	for i, p := range best.pattern {
		if name, ok := paramName(p); ok {
			params[name] = segs[i]
		}
	}
	return best, params, nil
}

// splitPath returns the unescaped segments of a path; one trailing slash is
// ignored.
func splitPath(u *url.URL) ([]string, bool) {
	p := strings.TrimPrefix(u.EscapedPath(), "/")
	p = strings.TrimSuffix(p, "/")
	raw := strings.Split(p, "/")
	segs := make([]string, len(raw))
	for i, r := range raw {
		seg, err := url.PathUnescape(r)
		if err != nil {
			return nil, false
		}
		segs[i] = seg
	}
	return segs, true
}

func (rt *route) matches(segs []string) bool {
	if len(segs) != len(rt.pattern) {
		return false
	}
	for i, p := range rt.pattern {
		if _, ok := paramName(p); ok {
			if segs[i] == "" {
				return false
			}
			continue
		}
		if p != segs[i] {
			return false
		}
	}
	return true
}

func (rt *route) moreSpecific(other *route) bool {
	for i := range rt.pattern {
		_, mine := paramName(rt.pattern[i])
		_, theirs := paramName(other.pattern[i])
		if mine != theirs {
			return !mine
		}
	}
	return false
}

func paramName(seg string) (string, bool) {
	if len(seg) > 2 && seg[0] == '{' && seg[len(seg)-1] == '}' {
		return seg[1 : len(seg)-1], true
	}
	return "", false
}

func joinMethods(ms []string) string {
	ms = slices.Clone(ms)
	if slices.Contains(ms, http.MethodGet) {
		ms = append(ms, http.MethodHead)
	}
	slices.Sort(ms)
	return strings.Join(ms, ", ")
}
