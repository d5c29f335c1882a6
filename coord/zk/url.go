package zk

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hasched/hasched/coord"
)

// Scheme is the URL scheme coord.Open hands to this package.
const Scheme = "zk"

func init() { coord.Register(Scheme, openURL) }

// knownParams lists the query parameters configFromURL understands.
const knownParams = "connect-timeout, session-timeout, digest-file, digest-env, tls, ca-file, cert-file, key-file, server-name"

// openURL opens
//
//	zk://host1:2181,host2:2181/namespace?session-timeout=6s&connect-timeout=5s
//
// with, for digest authentication and ACLs (Config.Digest):
//
//	digest-file=PATH   user:password, in a file (a trailing line break is dropped)
//	digest-env=VAR     or in an environment variable
//
// and for TLS to a secureClientPort (on when any of these is given):
//
//	tls=true           TLS with the system's roots and no client certificate
//	ca-file=PATH       the CA the servers' certificates are checked against
//	cert-file=PATH     a client certificate, for servers that ask for one
//	key-file=PATH      its key
//	server-name=NAME   the name the servers' certificates carry, if not the host
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
		return Config{}, fmt.Errorf("%w: %s: %s", coord.ErrUnsupportedURL, coord.RedactURL(u.String()), fmt.Sprintf(format, args...))
	}
	if !strings.EqualFold(u.Scheme, Scheme) {
		return bad("scheme is not %s", Scheme)
	}
	if u.Opaque != "" || u.Host == "" {
		return bad("no servers: want zk://host:port,host:port/namespace")
	}
	if u.User != nil {
		return bad("user information is not supported: give the digest in digest-file or digest-env")
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
	var (
		tlsOn                 bool
		files                 coord.TLSFiles
		digestFile, digestEnv string
	)
	for _, k := range keys {
		if len(q[k]) != 1 {
			return bad("query parameter %q given %d times", k, len(q[k]))
		}
		v := q[k][0]
		var dst *time.Duration
		switch k {
		case "session-timeout":
			dst = &cfg.SessionTimeout
		case "connect-timeout":
			dst = &cfg.ConnectTimeout
		case "tls":
			on, err := strconv.ParseBool(v)
			if err != nil {
				return bad("tls=%q is not true or false", v)
			}
			tlsOn = tlsOn || on
			continue
		case "ca-file", "cert-file", "key-file", "server-name", "digest-file", "digest-env":
			if v == "" {
				return bad("%s is empty", k)
			}
			*map[string]*string{
				"ca-file": &files.CA, "cert-file": &files.Cert, "key-file": &files.Key, "server-name": &files.ServerName,
				"digest-file": &digestFile, "digest-env": &digestEnv,
			}[k] = v
			continue
		default:
			return bad("unknown query parameter %q (known: %s)", k, knownParams)
		}
		d, err := time.ParseDuration(q[k][0])
		if err != nil || d <= 0 {
			return bad("query parameter %s=%q is not a positive duration", k, q[k][0])
		}
		*dst = d
	}

	if cfg.Digest, err = coord.ReadSecret(digestFile, digestEnv); err != nil {
		return Config{}, fmt.Errorf("zk: digest: %w", err)
	}
	if tlsOn || files != (coord.TLSFiles{}) {
		if cfg.TLS, err = files.Config(); err != nil {
			return Config{}, fmt.Errorf("zk: %w", err)
		}
	}
	if _, err := cfg.withDefaults(); err != nil {
		if errors.Is(err, coord.ErrCredentials) {
			return Config{}, err
		}
		return bad("%v", err)
	}
	return cfg, nil
}
