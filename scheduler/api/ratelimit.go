package api

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// failureLimiter counts failed authentications per client IP: after limit
// failures within window, the IP is refused (429) until the window ends, so
// that passwords cannot be guessed at the speed of the network. It tracks
// at most max IPs; when full it forgets expired windows first, then the
// oldest one, so a flood of addresses costs bounded memory.
type failureLimiter struct {
	limit  int
	window time.Duration
	max    int
	now    func() time.Time

	mu sync.Mutex
	by map[string]*failureWindow
}

type failureWindow struct {
	start    time.Time
	failures int
}

func newFailureLimiter(limit int, window time.Duration, max int, now func() time.Time) *failureLimiter {
	return &failureLimiter{limit: limit, window: window, max: max, now: now, by: map[string]*failureWindow{}}
}

// blocked says how long ip must still wait, or 0.
func (l *failureLimiter) blocked(ip string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	fw, ok := l.by[ip]
	if !ok {
		return 0
	}
	left := fw.start.Add(l.window).Sub(l.now())
	if left <= 0 {
		delete(l.by, ip)
		return 0
	}
	if fw.failures < l.limit {
		return 0
	}
	return left
}

// fail records a failed authentication from ip.
func (l *failureLimiter) fail(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	fw, ok := l.by[ip]
	if ok && now.Sub(fw.start) >= l.window {
		fw.start, fw.failures = now, 0
	}
	if !ok {
		if len(l.by) >= l.max {
			l.evict(now)
		}
		fw = &failureWindow{start: now}
		l.by[ip] = fw
	}
	fw.failures++
}

// evict makes room for one more IP.
func (l *failureLimiter) evict(now time.Time) {
	var oldestIP string
	var oldest time.Time
	for ip, fw := range l.by {
		if now.Sub(fw.start) >= l.window {
			delete(l.by, ip)
			continue
		}
		if oldestIP == "" || fw.start.Before(oldest) {
			oldestIP, oldest = ip, fw.start
		}
	}
	if len(l.by) >= l.max && oldestIP != "" {
		delete(l.by, oldestIP)
	}
}

func (l *failureLimiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.by)
}

// clientIP is the address of the peer that sent the request. Headers such
// as X-Forwarded-For are never used here: anyone can set them, and a limit
// keyed on them could be dodged by changing them at each try.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
