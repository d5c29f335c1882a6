package zk

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/hasched/hasched/coord"
)

// Scheme is the URL scheme coord.Open hands to this package.
const Scheme = "zk"

func init() { coord.Register(Scheme, openURL) }

// openURL opens
//
//	zk://host1:2181,host2:2181/namespace?session-timeout=6s&connect-timeout=5s
func openURL(ctx context.Context, u *url.URL) (coord.Coordinator, error) {
	cfg, err := configFromURL(u)
	if err != nil {
		return nil, err
	}
	return New(ctx, cfg)
}

// configFromURL reads a zk:// URL into a Config.
func configFromURL(u *url.URL) (Config, error) {
	var cfg Config
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%w: %s: %s", coord.ErrUnsupportedURL, u.Redacted(), fmt.Sprintf(format, args...))
	}
	if !strings.EqualFold(u.Scheme, Scheme) {
		return bad("scheme is not %s", Scheme)
	}
	if u.Opaque != "" || u.Host == "" {
		return bad("no servers: want zk://host:port,host:port/namespace")
	}
	if u.User != nil {
		return bad("user information is not supported")
	}
	for _, s := range strings.Split(u.Host, ",") {
		if s == "" {
			return bad("empty server in %q", u.Host)
		}
		cfg.Servers = append(cfg.Servers, s)
	}
	ns, err := coord.URLNamespace(u, DefaultNamespace)
	if err != nil {
		return bad("%v", err)
	}
	cfg.Namespace = ns
	q := u.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if len(q[k]) != 1 {
			return bad("query parameter %q given %d times", k, len(q[k]))
		}
		var dst *time.Duration
		switch k {
		case "session-timeout":
			dst = &cfg.SessionTimeout
		case "connect-timeout":
			dst = &cfg.ConnectTimeout
		default:
			return bad("unknown query parameter %q (known: connect-timeout, session-timeout)", k)
		}
		d, err := time.ParseDuration(q[k][0])
		if err != nil || d <= 0 {
			return bad("query parameter %s=%q is not a positive duration", k, q[k][0])
		}
		*dst = d
	}
	if _, err := cfg.withDefaults(); err != nil {
		return bad("%v", err)
	}
	return cfg, nil
}
