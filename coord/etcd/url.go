package etcd

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hasched/hasched/coord"
)

func init() { coord.Register("etcd", openURL) }

// knownParams lists the query parameters configFromURL understands.
const knownParams = "ttl, dial-timeout, tls, ca-file, cert-file, key-file, server-name, username, password-file, password-env"

// openURL opens a Coordinator from
//
//	etcd://host1:2379,host2:2379/namespace?ttl=5s&dial-timeout=3s
//
// with, for TLS (on when any of these is given):
//
//	tls=true              TLS with the system's roots and no client certificate
//	ca-file=PATH          the CA the servers' certificates are checked against
//	cert-file=PATH        the client certificate, for --client-cert-auth
//	key-file=PATH         its key
//	server-name=NAME      the name the servers' certificates carry, if not the host
//
// and for etcd's user/password auth:
//
//	username=NAME         (or user@host in the URL)
//	password-file=PATH    the password, in a file (a trailing line break is dropped)
//	password-env=VAR      or in an environment variable
//
// A password in the URL's user information (user:password@) is accepted but
// shows in the process list; prefer password-file or password-env.
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
	var (
		unknown                   []string
		tlsOn                     bool
		files                     coord.TLSFiles
		passwordFile, passwordEnv string
	)
	for name, values := range q {
		if len(values) != 1 {
			return cfg, fmt.Errorf("%w: etcd: %s given %d times", coord.ErrUnsupportedURL, name, len(values))
		}
		var dst *time.Duration
		switch name {
		case "ttl":
			dst = &cfg.SessionTTL
		case "dial-timeout":
			dst = &cfg.DialTimeout
		case "tls":
			on, err := strconv.ParseBool(values[0])
			if err != nil {
				return cfg, fmt.Errorf("%w: etcd: tls=%q is not true or false", coord.ErrUnsupportedURL, values[0])
			}
			tlsOn = tlsOn || on
			continue
		case "ca-file", "cert-file", "key-file", "server-name", "username", "password-file", "password-env":
			if values[0] == "" {
				return cfg, fmt.Errorf("%w: etcd: %s is empty", coord.ErrUnsupportedURL, name)
			}
			*map[string]*string{
				"ca-file": &files.CA, "cert-file": &files.Cert, "key-file": &files.Key, "server-name": &files.ServerName,
				"username": &cfg.Username, "password-file": &passwordFile, "password-env": &passwordEnv,
			}[name] = values[0]
			continue
		default:
			unknown = append(unknown, name)
			continue
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
		return cfg, fmt.Errorf("%w: etcd: unknown query parameter(s) %s (known: %s)", coord.ErrUnsupportedURL, strings.Join(unknown, ", "), knownParams)
	}
	if u.User != nil && q.Has("username") {
		return cfg, fmt.Errorf("%w: etcd: a user both in the URL and in username=", coord.ErrUnsupportedURL)
	}
	if passwordFile != "" || passwordEnv != "" {
		if _, inURL := u.User.Password(); inURL {
			return cfg, fmt.Errorf("%w: etcd: a password both in the URL and in password-file/password-env", coord.ErrUnsupportedURL)
		}
		if cfg.Username == "" {
			return cfg, fmt.Errorf("%w: etcd: password-file/password-env without a username", coord.ErrUnsupportedURL)
		}
		if cfg.Password, err = coord.ReadSecret(passwordFile, passwordEnv); err != nil {
			return cfg, fmt.Errorf("etcd: password: %w", err)
		}
	}
	if cfg.Username != "" && cfg.Password == "" {
		return cfg, fmt.Errorf("%w: etcd: user %q has no password: give password-file or password-env", coord.ErrUnsupportedURL, cfg.Username)
	}
	if tlsOn || files != (coord.TLSFiles{}) {
		if cfg.TLS, err = files.Config(); err != nil {
			return cfg, fmt.Errorf("etcd: %w", err)
		}
	}
	return cfg.withDefaults()
}
