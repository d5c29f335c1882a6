package coord

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// Opener opens a Coordinator from a parsed URL of its scheme.
type Opener func(ctx context.Context, u *url.URL) (Coordinator, error)

// The scheme registry is the one piece of package state: written only by
// backends' init functions (database/sql style), read by Open.
var (
	openersMu sync.RWMutex
	openers   = map[string]Opener{}
)

// Register makes Open hand URLs of scheme to open. Backends call it from init;
// registering a scheme twice panics, as it is a programming error.
func Register(scheme string, open Opener) {
	openersMu.Lock()
	defer openersMu.Unlock()
	scheme = strings.ToLower(scheme)
	if _, dup := openers[scheme]; dup {
		panic("coord: scheme registered twice: " + scheme)
	}
	openers[scheme] = open
}

// Schemes lists the registered schemes, sorted.
func Schemes() []string {
	openersMu.RLock()
	defer openersMu.RUnlock()
	out := make([]string, 0, len(openers))
	for s := range openers {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Open picks the backend by the URL's scheme:
//
//	etcd://host1:2379,host2:2379/namespace?ttl=5s
//	zk://host1:2181,host2:2181/namespace?session-timeout=6s
//
// The backend's package must be imported for its scheme to be known.
func Open(ctx context.Context, rawURL string) (Coordinator, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnsupportedURL, err)
	}
	openersMu.RLock()
	open, ok := openers[strings.ToLower(u.Scheme)]
	openersMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: scheme %q (known: %s)", ErrUnsupportedURL, u.Scheme, strings.Join(Schemes(), ", "))
	}
	return open(ctx, u)
}

// URLNamespace returns the namespace named by a coordinator URL's path, or
// def when the path is empty.
func URLNamespace(u *url.URL, def string) (string, error) {
	ns := strings.Trim(u.Path, "/")
	if ns == "" {
		ns = def
	}
	if err := ValidateNamespace(ns); err != nil {
		return "", err
	}
	return ns, nil
}
