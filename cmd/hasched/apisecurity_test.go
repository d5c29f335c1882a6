package main

import (
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hasched/hasched/internal/client"
	"github.com/hasched/hasched/scheduler/api"
	"github.com/hasched/hasched/scheduler/api/apitest"
	"github.com/hasched/hasched/scheduler/model"
)

// Issue 9, finding 1: `hasched serve` with no flags (make run) listens on
// loopback only.
func TestServeListensOnLoopbackByDefault(t *testing.T) {
	f := newServeCmd().Flags().Lookup("listen")
	if f.DefValue != "127.0.0.1:8899" {
		t.Fatalf("--listen defaults to %q, want 127.0.0.1:8899", f.DefValue)
	}
	cfg, err := serveFlags{coord: "embedded", dataDir: "d", listen: f.DefValue, executor: "local", logLevel: "info",
		embeddedClientURL: "http://127.0.0.1:2379", embeddedPeerURL: "http://127.0.0.1:2380"}.validate()
	if err != nil {
		t.Fatalf("the defaults are refused: %v", err)
	}
	if cfg.apiSec.serverTLS != nil || len(cfg.apiSec.warnings) != 0 {
		t.Fatalf("the defaults give TLS %v, warnings %q", cfg.apiSec.serverTLS, cfg.apiSec.warnings)
	}
}

// Issue 9, finding 1: an API other hosts can reach, without an account, is
// refused unless --insecure-no-auth-on-network says so; the error names
// the flag. Issue 9, findings 2 and 6: bad secret and TLS flags are refused
// before anything starts.
func TestServeRefusesAnInsecureAPI(t *testing.T) {
	empty := writeFile(t, "empty", "\n")
	pw := writeFile(t, "pw", "s3cret\n")
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"all interfaces", []string{"--listen", ":8899"}, nil, []string{"--listen :8899 is reachable", "--insecure-no-auth-on-network", "--auth-password-file"}},
		{"wildcard", []string{"--listen", "0.0.0.0:8899"}, nil, []string{"--insecure-no-auth-on-network"}},
		{"IPv6 wildcard", []string{"--listen", "[::]:8899"}, nil, []string{"--insecure-no-auth-on-network"}},
		{"network address", []string{"--listen", "192.0.2.10:8899"}, nil, []string{"--insecure-no-auth-on-network"}},
		{"host name", []string{"--listen", "sched.example:8899"}, nil, []string{"--insecure-no-auth-on-network"}},
		{"password and file", []string{"--auth-user", "root", "--auth-password", "x", "--auth-password-file", pw}, nil, []string{"--auth-password and --auth-password-file both set"}},
		{"empty password file", []string{"--auth-user", "root"}, map[string]string{"HASCHED_AUTH_PASSWORD_FILE": empty}, []string{"--auth-password-file", "is empty"}},
		{"missing password file", []string{"--auth-user", "root", "--auth-password-file", filepath.Join(t.TempDir(), "nope")}, nil, []string{"--auth-password-file", "no such file"}},
		{"user without password", []string{"--auth-user", "root"}, nil, []string{"--auth-user and --auth-password (or --auth-password-file)"}},
		{"read-only without admin", []string{"--auth-readonly-user", "guest", "--auth-readonly-password", "g"}, nil, []string{"--auth-readonly-user needs --auth-user"}},
		{"auth reads without auth", []string{"--auth-reads"}, nil, []string{"--auth-reads needs --auth-user"}},
		{"token ttl too long", []string{"--auth-token-ttl", "200h"}, nil, []string{"--auth-token-ttl"}},
		{"cert without key", []string{"--tls-cert", pw}, nil, []string{"--tls-cert and --tls-key go together"}},
		{"bad cert", []string{"--tls-cert", pw, "--tls-key", pw}, nil, []string{"--tls-cert/--tls-key"}},
		{"CA without TLS", []string{"--tls-ca", pw}, nil, []string{"need --tls-cert"}},
	} {
		t.Run(c.name, func(t *testing.T) { serveRefuses(t, c.env, c.args, c.want...) })
	}
}

func TestServeAllowsTheNetworkWithAnAccountOrTheInsecureFlag(t *testing.T) {
	base := serveFlags{coord: "zk://h:2181/ns", dataDir: "d", listen: "0.0.0.0:8899", executor: "local", logLevel: "info"}
	f := base
	f.apiSec.insecureNoAuthOnNetwork = true
	cfg, err := f.validate()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.apiSec.warnings) != 1 || !strings.Contains(cfg.apiSec.warnings[0], "anonymous writes") {
		t.Fatalf("warnings = %q, want one about anonymous writes", cfg.apiSec.warnings)
	}
	f = base
	f.authUser, f.apiSec.authPasswordFile = "root", writeFile(t, "pw", "s3cret\r\nignored\n")
	if cfg, err = f.validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.authPassword != "s3cret" {
		t.Fatalf("password from the file = %q, want its first line", cfg.authPassword)
	}
	if len(cfg.apiSec.warnings) != 1 || !strings.Contains(cfg.apiSec.warnings[0], "plain http") {
		t.Fatalf("warnings = %q, want one about passwords over plain http", cfg.apiSec.warnings)
	}
}

// Issue 9, finding 2: a password on the command line is taken, with a
// warning that names the safer ways; one from the environment is not
// warned about; a password file readable by others is.
func TestPasswordOnTheCommandLineIsWarnedAbout(t *testing.T) {
	f := serveFlags{coord: "zk://h:2181/ns", dataDir: "d", listen: "127.0.0.1:1", executor: "local", logLevel: "info", authUser: "root", authPassword: "pw-value"}
	cfg, err := f.validate()
	if err != nil || len(cfg.apiSec.warnings) != 0 {
		t.Fatalf("from the environment: %v, warnings %q", err, cfg.apiSec.warnings)
	}
	f.apiSec.passwordOnCommandLine = true
	cfg, err = f.validate()
	if err != nil || len(cfg.apiSec.warnings) != 1 || !strings.Contains(cfg.apiSec.warnings[0], "$HASCHED_AUTH_PASSWORD") ||
		strings.Contains(cfg.apiSec.warnings[0], "pw-value") {
		t.Fatalf("from argv: %v, warnings %q (naming the safer ways, not the password)", err, cfg.apiSec.warnings)
	}
	open := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(open, []byte("pw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.authPassword, f.apiSec.passwordOnCommandLine, f.apiSec.authPasswordFile = "", false, open
	if cfg, err = f.validate(); err != nil || len(cfg.apiSec.warnings) != 1 || !strings.Contains(cfg.apiSec.warnings[0], "chmod 600") {
		t.Fatalf("world-readable file: %v, warnings %q", err, cfg.apiSec.warnings)
	}
}

// tlsFiles writes a test CA and a certificate for 127.0.0.1 into a
// directory.
func tlsFiles(t *testing.T) (ca *apitest.CA, caFile, certFile, keyFile string) {
	t.Helper()
	ca = apitest.NewCA(t)
	caFile, certFile, keyFile = ca.WriteFiles(t, t.TempDir(), ca.Issue(t, "hasched"))
	return ca, caFile, certFile, keyFile
}

// Issue 9, findings 2, 4 and 6 end to end: two processes serve the API
// over TLS with client certificates, passwords from files, a read-only
// account and --auth-reads; a write through the standby reaches the leader
// over https; no password shows in the logs.
func TestServeAPIOverTLSWithAccounts(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an embedded etcd (make test runs it)")
	}
	ca, caFile, certFile, keyFile := tlsFiles(t)
	adminPW, guestPW := "adm1n-pw-secret", "gu3st-pw-secret"
	url := startEtcd(t, "tls")
	flags := func() serveFlags {
		return serveFlags{coord: url, authUser: "root", apiSec: apiSecurityFlags{
			authPasswordFile: writeFile(t, "admin", adminPW+"\n"),
			readOnlyUser:     "guest", readOnlyPasswordFile: writeFile(t, "guest", guestPW),
			authReads: true,
			tlsCert:   certFile, tlsKey: keyFile, tlsClientCA: caFile, tlsCA: caFile,
		}}
	}
	a, b := startProcess(t, "a", flags()), startProcess(t, "b", flags())

	leaf := ca.Issue(t, "operator")
	tc := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{leaf.TLS}}
	newClient := func(p *process, user, pw string) *client.Client {
		c, err := client.New(client.Config{BaseURL: "https://" + p.addr, User: user, Password: pw, TLS: tc})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var leader, standby *process
	eventually(t, "one process leads", 30*time.Second, func() error {
		for _, p := range []*process{a, b} {
			st, err := newClient(p, "guest", guestPW).Status(ctxT(t))
			if err != nil {
				return err
			}
			if st.Leader {
				leader = p
			} else if st.LeaderAddress != "" {
				standby = p
			}
		}
		if leader == nil || standby == nil {
			return errors.New("no leader yet, or the standby does not follow it")
		}
		return nil
	})

	if _, err := newClient(standby, "", "").Apps(ctxT(t)); !isStatus(err, http.StatusUnauthorized) {
		t.Fatalf("anonymous read with --auth-reads: %v, want 401", err)
	}
	if _, err := newClient(standby, "guest", guestPW).RegisterAppJSON(ctxT(t), []byte(`{"appName":"app","bootstrapScript":"true"}`)); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("read-only write: %v, want 403", err)
	}
	if _, err := newClient(standby, "root", adminPW).RegisterAppJSON(ctxT(t), []byte(`{"appName":"app","appURL":"https://u:repo-token@h/a.tgz","bootstrapScript":"true"}`)); err != nil {
		t.Fatalf("register through the standby over https: %v", err)
	}
	app, err := newClient(leader, "guest", guestPW).App(ctxT(t), "app")
	if err != nil || strings.Contains(app.AppURL, "repo-token") {
		t.Fatalf("the leader's app = %+v, %v; want it there, its URL redacted", app, err)
	}
	// Plain http to a TLS port, and TLS without a client certificate, fail.
	plain, _ := client.New(client.Config{BaseURL: "http://" + leader.addr})
	if _, err := plain.Health(ctxT(t)); err == nil {
		t.Fatal("plain http to the TLS port answered")
	}
	noCert, _ := client.New(client.Config{BaseURL: "https://" + leader.addr, TLS: &tls.Config{RootCAs: ca.Pool()}})
	if _, err := noCert.Health(ctxT(t)); err == nil {
		t.Fatal("a client without a certificate was served despite --tls-client-ca")
	}
	for _, p := range []*process{a, b} {
		if s := p.log.String(); strings.Contains(s, adminPW) || strings.Contains(s, guestPW) || strings.Contains(s, "repo-token") {
			t.Fatalf("the log of %s holds a secret:\n%s", p.name, s)
		}
	}
	if !strings.Contains(standby.log.String(), "audit: user=root method=POST path=/api/app") {
		t.Fatalf("no audit line for the write on the standby:\n%s", standby.log.String())
	}
}

func isStatus(err error, code int) bool {
	var e *client.Error
	return errors.As(err, &e) && e.StatusCode == code
}

// Issue 9, findings 1, 2 and 6 for the CLI: the password from a file or
// $HASCHED_PASSWORD_FILE, the server's certificate checked with --ca-cert,
// and writes with a body sent as application/json (trigger's bare name
// included: the server refuses anything else).
func TestCLIPasswordFileAndCACert(t *testing.T) {
	ca, caFile, _, _ := tlsFiles(t)
	leaf := ca.Issue(t, "server")
	svc := apitest.NewService(model.Status{Self: "127.0.0.1:8899", Executor: "local"})
	h, err := api.New(api.Config{Service: svc, AuthUser: "root", AuthPassword: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pw := writeFile(t, "pw", "s3cret\n")
	env := map[string]string{"HASCHED_SERVER": srv.URL, "HASCHED_USER": "root", "HASCHED_CA_CERT": caFile}

	cli(t, env, appJSON, "app", "register", "-f", "-", "--password-file", pw).ok(t)
	cli(t, env, jobJSON, "job", "register", "-f", "-", "--password-file", pw).ok(t)
	env["HASCHED_PASSWORD_FILE"] = pw
	r := cli(t, env, "", "job", "trigger", "foo_job").ok(t)
	if strings.Contains(r.stderr, "warning") {
		t.Fatalf("a password from a file was warned about: %s", r.stderr)
	}
	if got := svc.Triggered(); len(got) != 1 || got[0] != "foo_job" {
		t.Fatalf("triggered = %v", got)
	}
	delete(env, "HASCHED_PASSWORD_FILE")
	cli(t, env, "", "job", "disable", "foo_job", "--password", "s3cret").ok(t).hasErr(t, "warning: --password on the command line", "--password-file")
	cli(t, env, "", "job", "enable", "foo_job", "--password", "wrong").fails(t, "401")
	delete(env, "HASCHED_CA_CERT")
	cli(t, env, "", "app", "list").fails(t, "certificate")
}

func (r result) hasErr(t *testing.T, want ...string) result {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Fatalf("stderr does not contain %q:\n%s", w, r.stderr)
		}
	}
	return r
}

// Issue 9, finding 2: once read, the API's passwords leave the process's
// environment, which tasks inherit.
func TestAPISecretsLeaveTheEnvironment(t *testing.T) {
	t.Setenv("HASCHED_AUTH_PASSWORD", "s3cret")
	t.Setenv("HASCHED_AUTH_READONLY_PASSWORD", "gu3st")
	dropAPISecretsFromEnv()
	for _, name := range apiSecretEnv {
		if v, ok := os.LookupEnv(name); ok {
			t.Errorf("%s=%q is still in the environment", name, v)
		}
	}
}
