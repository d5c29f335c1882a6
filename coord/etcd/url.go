package etcd

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hasched/hasched/coord"
)

func init() { coord.Register("etcd", openURL) }

// openURL opens a Coordinator from
//
//	etcd://[user:password@]host1:2379,host2:2379/namespace?ttl=5s&dial-timeout=3s
func openURL(ctx context.Context, u *url.URL) (coord.Coordinator, error) {
	cfg, err := configFromURL(u)
	if err != nil {
		return nil, err
	}
	return New(ctx, cfg)
}

// configFromURL parses an etcd:// URL; it refuses what it does not know
// rather than ignore a misspelt parameter.
func configFromURL(u *url.URL) (Config, error) {
	var cfg Config
	if u.Host == "" {
		return cfg, fmt.Errorf("%w: etcd: no endpoints in %q", coord.ErrUnsupportedURL, u.Redacted())
	}
	for _, h := range strings.Split(u.Host, ",") {
		if h == "" {
			return cfg, fmt.Errorf("%w: etcd: empty endpoint in %q", coord.ErrUnsupportedURL, u.Host)
		}
		cfg.Endpoints = append(cfg.Endpoints, h)
	}
	ns, err := coord.URLNamespace(u, DefaultNamespace)
	if err != nil {
		return cfg, fmt.Errorf("etcd: %w", err)
	}
	cfg.Namespace = ns
	if u.User != nil {
		cfg.Username = u.User.Username()
		cfg.Password, _ = u.User.Password()
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return cfg, fmt.Errorf("%w: etcd: query: %v", coord.ErrUnsupportedURL, err)
	}
	var unknown []string
	for name, values := range q {
		var dst *time.Duration
		switch name {
		case "ttl":
			dst = &cfg.SessionTTL
		case "dial-timeout":
			dst = &cfg.DialTimeout
		default:
			unknown = append(unknown, name)
			continue
		}
		if len(values) != 1 {
			return cfg, fmt.Errorf("%w: etcd: %s given %d times", coord.ErrUnsupportedURL, name, len(values))
		}
		d, err := time.ParseDuration(values[0])
		if err != nil || d <= 0 {
			return cfg, fmt.Errorf("%w: etcd: %s=%q is not a positive duration", coord.ErrUnsupportedURL, name, values[0])
		}
		if name == "ttl" && d < time.Second {
			return cfg, fmt.Errorf("%w: etcd: ttl=%s is below etcd's granularity of 1s", coord.ErrUnsupportedURL, values[0])
		}
		*dst = d
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return cfg, fmt.Errorf("%w: etcd: unknown query parameter(s) %s (known: ttl, dial-timeout)", coord.ErrUnsupportedURL, strings.Join(unknown, ", "))
	}
	return cfg.withDefaults()
}
