package etcd

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
)

func TestConfigDefaultsAndValidation(t *testing.T) {
	cfg, err := Config{Endpoints: []string{"127.0.0.1:2379"}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Namespace != DefaultNamespace || cfg.SessionTTL != DefaultSessionTTL || cfg.DialTimeout != DefaultDialTimeout || cfg.Logger == nil {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	ep := []string{"127.0.0.1:2379"}
	for _, tc := range []struct {
		name  string
		cfg   Config
		field string
	}{
		{"no endpoints", Config{}, "Endpoints"},
		{"empty endpoint", Config{Endpoints: []string{""}}, "Endpoints[0]"},
		{"nested namespace", Config{Endpoints: ep, Namespace: "a/b"}, "Namespace"},
		{"dot namespace", Config{Endpoints: ep, Namespace: ".."}, "Namespace"},
		{"ttl below a second", Config{Endpoints: ep, SessionTTL: 500 * time.Millisecond}, "SessionTTL"},
		{"negative ttl", Config{Endpoints: ep, SessionTTL: -time.Second}, "SessionTTL"},
		{"negative dial timeout", Config{Endpoints: ep, DialTimeout: -time.Second}, "DialTimeout"},
		{"username without password", Config{Endpoints: ep, Username: "u"}, "Password"},
	} {
		_, err := tc.cfg.withDefaults()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: got error %v, want one naming %s", tc.name, err, tc.field)
		}
	}
}

func TestConfigFromURL(t *testing.T) {
	parse := func(raw string) (Config, error) {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", raw, err)
		}
		return configFromURL(u)
	}
	cfg, err := parse("etcd://user:secret@host1:2379,host2:2379/prod?ttl=5s&dial-timeout=3s")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Endpoints, " ") != "host1:2379 host2:2379" || cfg.Namespace != "prod" ||
		cfg.SessionTTL != 5*time.Second || cfg.DialTimeout != 3*time.Second || cfg.Username != "user" || cfg.Password != "secret" {
		t.Fatalf("parsed %+v", cfg)
	}
	cfg, err = parse("etcd://h:2379")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Namespace != DefaultNamespace || cfg.SessionTTL != DefaultSessionTTL {
		t.Fatalf("defaults: %+v", cfg)
	}

	for _, tc := range []struct {
		url  string
		want error
		says string
	}{
		{"etcd://h:2379/ns?ttl=fast", coord.ErrUnsupportedURL, "ttl"},
		{"etcd://h:2379/ns?ttl=500ms", coord.ErrUnsupportedURL, "ttl"},
		{"etcd://h:2379/ns?ttl=-5s", coord.ErrUnsupportedURL, "ttl"},
		{"etcd://h:2379/ns?ttl=5s&ttl=6s", coord.ErrUnsupportedURL, "ttl"},
		{"etcd://h:2379/ns?dial-timeout=0s", coord.ErrUnsupportedURL, "dial-timeout"},
		{"etcd://h:2379/ns?session-timeout=5s&zz=1", coord.ErrUnsupportedURL, "session-timeout, zz"},
		{"etcd://h:2379/a/b", coord.ErrInvalidPath, "a/b"},
		{"etcd://h:2379/bad%20ns", coord.ErrInvalidPath, "bad ns"},
		{"etcd:///ns", coord.ErrUnsupportedURL, "no endpoints"},
		{"etcd://h1:2379,,h2:2379/ns", coord.ErrUnsupportedURL, "empty endpoint"},
	} {
		_, err := parse(tc.url)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: got error %v, want %v saying %q", tc.url, err, tc.want, tc.says)
		}
	}
}

func TestOpenPicksEtcdByScheme(t *testing.T) {
	u, err := url.Parse(endpoints(t)[0])
	if err != nil {
		t.Fatal(err)
	}
	// The shared server asks for client certificates: the URL names them.
	f := server.ClientTLSFiles()
	q := url.Values{"ttl": {"2s"}, "dial-timeout": {"2s"}, "ca-file": {f.CA}, "cert-file": {f.Cert}, "key-file": {f.Key}}
	c, err := coord.Open(testContext(t), "etcd://"+u.Host+"/"+namespace(t)+"?"+q.Encode())
	if err != nil {
		t.Fatalf("coord.Open: %v", err)
	}
	defer c.Close()
	ec, ok := c.(*Coordinator)
	if !ok {
		t.Fatalf("coord.Open returned %T", c)
	}
	if ec.ttl != 2*time.Second {
		t.Fatalf("session TTL %v, want 2s", ec.ttl)
	}
}

func TestNewFailsWithinDialTimeoutOnDeadEndpoint(t *testing.T) {
	// A port nothing listens on: connections are refused and retried.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close()

	start := time.Now()
	_, err = New(context.Background(), Config{Endpoints: []string{dead}, DialTimeout: 500 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("New on a dead endpoint: %v, want DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("New took %v with a 500ms dial timeout", took)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = New(ctx, Config{Endpoints: []string{dead}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("New with a cancelled context: %v, want Canceled", err)
	}
}
