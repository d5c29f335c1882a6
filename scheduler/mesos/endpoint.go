package mesos

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// schedulerPath is the v1 scheduler API's path on a master.
const schedulerPath = "/api/v1/scheduler"

// maxRedirectHops bounds the 307s one request follows by itself; after that
// the 307 goes to httpsched, which backs off and tries again.
const maxRedirectHops = 4

// headerStreamID marks every call but SUBSCRIBE.
const headerStreamID = "Mesos-Stream-Id"

// masterSource is where the masters are: a list of URLs or ZooKeeper.
type masterSource struct {
	// urls are scheduler API endpoints (http://host:5050/api/v1/scheduler).
	urls    []string
	zk      *zkSource
	display string
}

// zkSource is a zk:// master URL taken apart.
type zkSource struct {
	servers []string
	path    string
	auth    string // "user:password" for digest auth, or ""
	display string // without the password
}

// ParseMasters splits the value of a --mesos-master flag: one zk:// URL
// (whose host list has commas of its own), or comma-separated http(s) URLs.
func ParseMasters(s string) []string {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	if strings.HasPrefix(strings.ToLower(s), "zk://") {
		return []string{s}
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseMasterSource checks Config.Masters.
func parseMasterSource(masters []string) (masterSource, error) {
	var src masterSource
	if len(masters) == 0 {
		return src, fmt.Errorf("%w: no Mesos master: give http://host:5050 URLs or one zk://host:2181/mesos URL", ErrInvalidConfig)
	}
	var shown []string
	for _, m := range masters {
		m = strings.TrimSpace(m)
		if strings.HasPrefix(strings.ToLower(m), "zk://") {
			// Not url.Parse: a host list with ports defaulted
			// ("z1:2181,z2") is no valid URL host.
			if len(masters) != 1 {
				return src, fmt.Errorf("%w: a zk:// master URL must be the only one (got %d URLs)", ErrInvalidConfig, len(masters))
			}
			zs, err := parseZK(m)
			if err != nil {
				return src, err
			}
			src.zk = &zs
			src.display = zs.display
			return src, nil
		}
		u, err := url.Parse(m)
		if err != nil {
			return src, fmt.Errorf("%w: master %q: %v", ErrInvalidConfig, m, err)
		}
		switch strings.ToLower(u.Scheme) {
		case "http", "https":
			if u.Host == "" || u.Hostname() == "" {
				return src, fmt.Errorf("%w: master %q names no host", ErrInvalidConfig, u.Redacted())
			}
			if u.User != nil {
				return src, fmt.Errorf("%w: master %q: credentials in the URL are not supported", ErrInvalidConfig, u.Redacted())
			}
			if p := u.Port(); p != "" {
				if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
					return src, fmt.Errorf("%w: master %q: bad port %q", ErrInvalidConfig, m, p)
				}
			}
			if u.RawQuery != "" || u.Fragment != "" {
				return src, fmt.Errorf("%w: master %q: give scheme://host:port only", ErrInvalidConfig, m)
			}
			path := strings.TrimSuffix(u.Path, "/")
			if path != "" && path != schedulerPath {
				return src, fmt.Errorf("%w: master %q: give scheme://host:port only (the path is %s)", ErrInvalidConfig, m, schedulerPath)
			}
			base := url.URL{Scheme: strings.ToLower(u.Scheme), Host: u.Host}
			src.urls = append(src.urls, base.String()+schedulerPath)
			shown = append(shown, base.String())
		case "":
			return src, fmt.Errorf("%w: master %q is not a URL: use http://host:5050 or zk://host:2181/mesos", ErrInvalidConfig, m)
		default:
			return src, fmt.Errorf("%w: master %q: unsupported scheme %q: use http, https or zk", ErrInvalidConfig, u.Redacted(), u.Scheme)
		}
	}
	src.display = strings.Join(shown, ",")
	return src, nil
}

// parseZK reads zk://[user:password@]host[:port][,host[:port]…]/path.
func parseZK(raw string) (zkSource, error) {
	var zs zkSource
	rest := raw[len("zk://"):]
	authority, path, _ := strings.Cut(rest, "/")
	path = "/" + path
	var shownAuth string
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		zs.auth = authority[:i]
		authority = authority[i+1:]
		user, _, _ := strings.Cut(zs.auth, ":")
		shownAuth = user + "@"
	}
	shown := "zk://" + shownAuth + authority + path
	if authority == "" {
		return zs, fmt.Errorf("%w: %q names no ZooKeeper servers: zk://host:2181[,host:2181…]/mesos", ErrInvalidConfig, shown)
	}
	for _, h := range strings.Split(authority, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			return zs, fmt.Errorf("%w: %q: empty server in the host list", ErrInvalidConfig, shown)
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(strings.Trim(h, "[]"), "2181")
		}
		host, port, _ := net.SplitHostPort(h)
		if n, err := strconv.ParseUint(port, 10, 16); host == "" || err != nil || n == 0 || strings.ContainsAny(host, "/?#@ ") {
			return zs, fmt.Errorf("%w: %q: bad ZooKeeper server %q", ErrInvalidConfig, shown, h)
		}
		zs.servers = append(zs.servers, h)
	}
	if strings.ContainsAny(path, "?#") {
		return zs, fmt.Errorf("%w: %q: give zk://host:2181/path only", ErrInvalidConfig, shown)
	}
	zs.path = strings.TrimSuffix(path, "/")
	if zs.path == "" {
		return zs, fmt.Errorf("%w: %q names no path: zk://host:2181/mesos", ErrInvalidConfig, shown)
	}
	zs.display = "zk://" + shownAuth + authority + zs.path
	return zs, nil
}

func newTransport(cfg Config) *http.Transport {
	dialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		TLSHandshakeTimeout:   cfg.DialTimeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
	}
}

// endpoints knows where the leading master is and sends requests there.
// It follows the leader's 307 redirects itself, for every call (httpsched
// follows them for SUBSCRIBE only, and would send the calls after it to
// the master it started with); with a URL list it moves on to the next
// master when one cannot be reached; with ZooKeeper it uses the detected
// leader.
type endpoints struct {
	src       masterSource
	transport *http.Transport
	client    *http.Client // no Timeout: it carries the event stream
	log       hclog.Logger

	mu         sync.Mutex
	target     string        // the endpoint requests go to
	subscribed string        // where the last successful SUBSCRIBE went
	next       int           // the next URL of src.urls to try
	detected   string        // ZooKeeper's leader, or ""
	changed    chan struct{} // closed and replaced when detected changes
	onChange   func(string)
}

func newEndpoints(src masterSource, transport *http.Transport, log hclog.Logger) *endpoints {
	ep := &endpoints{
		src:       src,
		transport: transport,
		client: &http.Client{
			Transport:     transport,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log:     log,
		changed: make(chan struct{}),
	}
	if len(src.urls) > 0 {
		ep.target = src.urls[0]
		ep.next = 1 % len(src.urls)
	}
	return ep
}

// initial is the endpoint httpcli is configured with; every request's URL
// is replaced by do anyway.
func (ep *endpoints) initial() string {
	if len(ep.src.urls) > 0 {
		return ep.src.urls[0]
	}
	return "http://mesos-master.invalid" + schedulerPath
}

// current is the endpoint requests go to now ("" if none is known).
func (ep *endpoints) current() string {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return baseURL(ep.target)
}

// setDetected is master detection's report of a new leader ("" if none).
func (ep *endpoints) setDetected(endpoint string) {
	ep.mu.Lock()
	changed := ep.detected != endpoint
	ep.detected = endpoint
	if endpoint != "" {
		ep.target = endpoint
	}
	if changed {
		close(ep.changed)
		ep.changed = make(chan struct{})
	}
	cb := ep.onChange
	ep.mu.Unlock()
	if changed && cb != nil {
		cb(endpoint)
	}
}

// redirected records the leader a 307 named.
func (ep *endpoints) redirected(from, to string) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.target == from {
		ep.target = to
	}
}

// unreachable moves on from an endpoint that cannot be reached: to the
// next master of the list (or back to the only one, after a redirect led
// elsewhere). With ZooKeeper detection says where the leader is.
func (ep *endpoints) unreachable(endpoint string) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.src.zk != nil || ep.target != endpoint {
		return
	}
	ep.target = ep.src.urls[ep.next]
	ep.next = (ep.next + 1) % len(ep.src.urls)
	if ep.target != endpoint {
		ep.log.Debug("master unreachable; trying the next one", "unreachable", baseURL(endpoint), "next", baseURL(ep.target))
	}
}

// lastSubscribed is the base URL of the master the last successful
// SUBSCRIBE went to.
func (ep *endpoints) lastSubscribed() string {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return baseURL(ep.subscribed)
}

// targetNow is where a request goes; with ZooKeeper and no leader known,
// ErrNoLeader and a channel closed when that changes.
func (ep *endpoints) targetNow() (string, <-chan struct{}, error) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.src.zk != nil && ep.detected == "" {
		return "", ep.changed, ErrNoLeader
	}
	return ep.target, nil, nil
}

// do is httpcli's DoFunc: it sends req to the leader, following redirects.
func (ep *endpoints) do(req *http.Request) (*http.Response, error) {
	subscribe := req.Header.Get(headerStreamID) == ""
	target, changed, err := ep.targetNow()
	for err != nil && subscribe {
		// No leader: a SUBSCRIBE waits for one (or for Close).
		select {
		case <-changed:
		case <-req.Context().Done():
			err = req.Context().Err()
			changed = nil
		}
		if changed == nil {
			break
		}
		target, changed, err = ep.targetNow()
	}
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	for hop := 0; ; hop++ {
		u, err := url.Parse(target)
		if err != nil {
			return nil, err
		}
		r := req.Clone(req.Context())
		r.URL, r.Host = u, ""
		if hop > 0 {
			if req.GetBody == nil {
				return nil, fmt.Errorf("mesos: cannot replay a %s request to %s", req.Method, baseURL(target))
			}
			if r.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
		resp, err := ep.client.Do(r)
		if err != nil {
			if subscribe && req.Context().Err() == nil {
				ep.unreachable(target)
			}
			return nil, err
		}
		if resp.StatusCode != http.StatusTemporaryRedirect || hop >= maxRedirectHops {
			if subscribe && resp.StatusCode == http.StatusOK {
				ep.mu.Lock()
				ep.subscribed = target
				ep.mu.Unlock()
			}
			return resp, nil
		}
		next, ok := redirectTarget(target, resp.Header.Get("Location"))
		if !ok {
			return resp, nil // httpsched reports the bad Location
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		ep.log.Info("following the master's redirect to the leader", "from", baseURL(target), "to", baseURL(next))
		ep.redirected(target, next)
		target = next
	}
}

// redirectTarget resolves a master's Location ("//host:port/api/v1/scheduler")
// against the endpoint that sent it.
func redirectTarget(from, location string) (string, bool) {
	if location == "" {
		return "", false
	}
	base, err := url.Parse(from)
	if err != nil {
		return "", false
	}
	loc, err := url.Parse(location)
	if err != nil || loc.Host == "" {
		return "", false
	}
	u := base.ResolveReference(loc)
	if u.Path == "" || u.Path == "/" {
		u.Path = schedulerPath
	}
	u.RawQuery, u.Fragment = "", ""
	return u.String(), true
}

// baseURL is an endpoint without the API path.
func baseURL(endpoint string) string {
	return strings.TrimSuffix(endpoint, schedulerPath)
}
