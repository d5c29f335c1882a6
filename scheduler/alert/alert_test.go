package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/hasched/hasched/scheduler/events"
	"github.com/hasched/hasched/scheduler/executor"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// request is what a test receiver got.
type request struct {
	header http.Header
	body   []byte
	at     time.Time
}

// sink is a test receiver: it records every request and answers with
// answer(n), n counting from 1.
type sink struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []request
	answer func(n int, w http.ResponseWriter)
}

func newSink(t *testing.T, answer func(n int, w http.ResponseWriter)) *sink {
	t.Helper()
	s := &sink{answer: answer}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, request{header: r.Header.Clone(), body: body, at: time.Now()})
		n := len(s.reqs)
		s.mu.Unlock()
		if s.answer != nil {
			s.answer(n, w)
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.reqs...)
}

// syncBuffer is a log output tests read while the Notifier writes.
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

// start makes a Notifier with quick back-offs, closed (and waited for)
// at the test's end.
func start(t *testing.T, cfg Config) (*Notifier, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	if cfg.Logger == nil {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug})
	}
	if cfg.Backoff == 0 {
		cfg.Backoff, cfg.MaxBackoff = time.Millisecond, 5*time.Millisecond
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.Close(ctx)
	})
	return n, logs
}

// closeNow closes n, waiting for every delivery taken.
func closeNow(t *testing.T, n *Notifier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatalf("Close: %v (deliveries did not finish)", err)
	}
}

var fire = time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)

func failed(job string) events.Event {
	return events.Event{Kind: events.Ended, Time: fire.Add(time.Minute), Term: 7, Job: job,
		TaskID: job + "@-@1796288400000@-@2@-@1", Shard: 2, Attempt: 1, FireTime: fire,
		Host: "worker-1", State: executor.StateFailed, ExitCode: 3, Message: "exit status 3", Outcome: events.GivenUp}
}

func TestSignatureVerifiesWithTheSecret(t *testing.T) {
	s := newSink(t, nil)
	secret := []byte("s3cret-key")
	n, _ := start(t, Config{Receivers: []Receiver{{Name: "ops", URL: s.srv.URL + "/hook", Secret: secret, Events: []Class{Failure}, Global: true}}})
	before := time.Now().Unix()
	n.Emit(failed("j"))
	closeNow(t, n)
	reqs := s.requests()
	if len(reqs) != 1 {
		t.Fatalf("receiver got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if ev := r.header.Get(HeaderEvent); ev != "failure" {
		t.Errorf("%s %q, want failure", HeaderEvent, ev)
	}
	if id := r.header.Get(HeaderDelivery); len(id) != 32 {
		t.Errorf("%s %q, want 32 hex digits", HeaderDelivery, id)
	}
	ts := r.header.Get(HeaderTimestamp)
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sec < before || sec > time.Now().Unix() {
		t.Errorf("%s %q, want the Unix second of sending", HeaderTimestamp, ts)
	}
	// A receiver's check, written out rather than calling Sign.
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "." + string(r.body)))
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if got := r.header.Get(HeaderSignature); !hmac.Equal([]byte(got), []byte(want)) {
		t.Errorf("%s %q, want %q", HeaderSignature, got, want)
	}
	if Sign([]byte("other"), ts, r.body) == want {
		t.Error("another key makes the same signature")
	}
}

func TestNoSignatureWithoutASecret(t *testing.T) {
	s := newSink(t, nil)
	n, _ := start(t, Config{Receivers: []Receiver{{Name: "ops", URL: s.srv.URL, Events: []Class{Failure}, Global: true}}})
	n.Emit(failed("j"))
	closeNow(t, n)
	reqs := s.requests()
	if len(reqs) != 1 || reqs[0].header.Get(HeaderSignature) != "" {
		t.Fatalf("got %d requests, signature %q; want 1 without a signature", len(reqs), reqs[0].header.Get(HeaderSignature))
	}
}

func TestJSONPayloadCarriesTheRun(t *testing.T) {
	s := newSink(t, nil)
	n, _ := start(t, Config{Scheduler: "10.0.0.1:8899", Receivers: []Receiver{{Name: "ops", URL: s.srv.URL, Events: []Class{Failure, Timeout}, Global: true}}})
	ev := failed("j")
	ev.Message = strings.Repeat("é", 2000) // 4000 bytes
	n.Emit(ev)
	closeNow(t, n)
	reqs := s.requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests, want 1", len(reqs))
	}
	var p Payload
	dec := json.NewDecoder(bytes.NewReader(reqs[0].body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("payload %s: %v", reqs[0].body, err)
	}
	if p.Event != Failure || p.Job != "j" || p.TaskID != ev.TaskID || *p.Shard != 2 || *p.Attempt != 1 ||
		!p.FireTime.Equal(fire) || p.State != executor.StateFailed || *p.ExitCode != 3 || p.Host != "worker-1" ||
		p.Term != 7 || p.Outcome != events.GivenUp || !p.Time.Equal(ev.Time) || p.Scheduler != "10.0.0.1:8899" {
		t.Errorf("payload %s does not carry the event %+v", reqs[0].body, ev)
	}
	if len(p.Message) > maxMessage || !strings.HasSuffix(p.Message, "…") || !strings.HasPrefix(p.Message, "éé") {
		t.Errorf("message of %d bytes, want at most %d, cut on a rune and marked", len(p.Message), maxMessage)
	}
}

func TestSlackPayloadIsAnIncomingWebhookText(t *testing.T) {
	s := newSink(t, nil)
	n, _ := start(t, Config{Receivers: []Receiver{{Name: "chat", URL: s.srv.URL, Format: Slack, Events: []Class{Failure, Timeout, Misfire, Leadership}, Global: true}}})
	ev := failed("nightly")
	ev.Message = "boom <!channel> & <https://evil.example|click>"
	n.Emit(ev)
	to := failed("nightly")
	to.State = executor.StateTimedOut
	n.Emit(to)
	n.Emit(events.Event{Kind: events.Misfired, Job: "nightly", Count: 4, FireTime: fire})
	n.Emit(events.Event{Kind: events.Leadership, Leader: true, Term: 9})
	closeNow(t, n)
	reqs := s.requests()
	if len(reqs) != 4 {
		t.Fatalf("got %d requests, want 4", len(reqs))
	}
	var texts []string
	for _, r := range reqs {
		var body map[string]any
		if err := json.Unmarshal(r.body, &body); err != nil {
			t.Fatalf("slack body %s: %v", r.body, err)
		}
		text, ok := body["text"].(string)
		if len(body) != 1 || !ok || text == "" {
			t.Fatalf("slack body %s: want exactly a non-empty text", r.body)
		}
		texts = append(texts, text)
	}
	all := strings.Join(texts, "\n")
	for _, want := range []string{"`nightly`", "failed", "timed out", "exit code 3", "given up", "misfired", "4 fire", "became leader", "term 9",
		"&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"} {
		if !strings.Contains(all, want) {
			t.Errorf("slack texts lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "<!channel>") {
		t.Errorf("a task's message pages a channel:\n%s", all)
	}
}

func TestRetriesOnServerErrorsThenSucceeds(t *testing.T) {
	s := newSink(t, func(n int, w http.ResponseWriter) {
		if n < 3 {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	n, _ := start(t, Config{Receivers: []Receiver{{Name: "ops", URL: s.srv.URL, Events: []Class{Failure}, Global: true, MaxAttempts: 3}}})
	n.Emit(failed("j"))
	closeNow(t, n)
	reqs := s.requests()
	if len(reqs) != 3 {
		t.Fatalf("got %d attempts, want 3 (two 500s, then 200)", len(reqs))
	}
	if id := reqs[0].header.Get(HeaderDelivery); reqs[1].header.Get(HeaderDelivery) != id || reqs[2].header.Get(HeaderDelivery) != id {
		t.Errorf("delivery ids differ between attempts of one delivery")
	}
	if n.Delivered() != 1 || n.Failed() != 0 {
		t.Errorf("delivered %d, failed %d; want 1, 0", n.Delivered(), n.Failed())
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	s := newSink(t, func(n int, w http.ResponseWriter) {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	})
	n, _ := start(t, Config{Receivers: []Receiver{{Name: "ops", URL: s.srv.URL, Events: []Class{Failure}, Global: true}}})
	n.Emit(failed("j"))
	closeNow(t, n)
	reqs := s.requests()
	if len(reqs) != 2 {
		t.Fatalf("got %d attempts, want 2", len(reqs))
	}
	if gap := reqs[1].at.Sub(reqs[0].at); gap < 900*time.Millisecond {
		t.Errorf("second attempt %v after a Retry-After of 1s", gap)
	}
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	s := newSink(t, func(_ int, w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) })
	n, logs := start(t, Config{Receivers: []Receiver{{Name: "ops", URL: s.srv.URL, Events: []Class{Failure}, Global: true, MaxAttempts: 4}}})
	n.Emit(failed("j"))
	closeNow(t, n)
	if got := len(s.requests()); got != 4 {
		t.Fatalf("got %d attempts, want 4", got)
	}
	if n.Failed() != 1 || n.Delivered() != 0 {
		t.Errorf("failed %d, delivered %d; want 1, 0", n.Failed(), n.Delivered())
	}
	if !strings.Contains(logs.String(), "gave up after 4 attempts") {
		t.Errorf("the log does not say it gave up:\n%s", logs)
	}
}

func TestAClientErrorIsNotRetried(t *testing.T) {
	s := newSink(t, func(_ int, w http.ResponseWriter) { w.WriteHeader(http.StatusForbidden) })
	n, _ := start(t, Config{Receivers: []Receiver{{Name: "ops", URL: s.srv.URL, Events: []Class{Failure}, Global: true, MaxAttempts: 5}}})
	n.Emit(failed("j"))
	closeNow(t, n)
	if got := len(s.requests()); got != 1 {
		t.Fatalf("got %d attempts after a 403, want 1", got)
	}
}

func TestRedirectsToAnotherHostAreRefused(t *testing.T) {
	other := newSink(t, nil)
	s := newSink(t, func(_ int, w http.ResponseWriter) {
		w.Header().Set("Location", other.srv.URL+"/stolen")
		w.WriteHeader(http.StatusTemporaryRedirect)
	})
	n, _ := start(t, Config{Receivers: []Receiver{{Name: "ops", URL: s.srv.URL, Secret: []byte("k"), Events: []Class{Failure}, Global: true, MaxAttempts: 3}}})
	n.Emit(failed("j"))
	closeNow(t, n)
	if got := len(other.requests()); got != 0 {
		t.Fatalf("the redirect's target got %d requests, want none", got)
	}
	if got := len(s.requests()); got != 1 {
		t.Errorf("a refused redirect was tried %d times, want once", got)
	}
	if n.Failed() != 1 {
		t.Errorf("failed %d, want 1", n.Failed())
	}
}

// TestAHangingReceiverNeverSlowsEmit: while one receiver never answers,
// Emit stays fast, the other receiver gets its alerts, the hanging one's
// surplus is dropped and counted, and Close ends every goroutine (goleak
// in TestMain) once its deadline passes.
func TestAHangingReceiverNeverSlowsEmit(t *testing.T) {
	release := make(chan struct{})
	hang := newSink(t, func(int, http.ResponseWriter) { <-release })
	t.Cleanup(func() { close(release) }) // before the server's Close (cleanups run last-in first)
	ok := newSink(t, nil)
	n, logs := start(t, Config{QueueSize: 8, Workers: 1, Receivers: []Receiver{
		{Name: "hang", URL: hang.srv.URL, Events: []Class{Failure}, Global: true, Timeout: time.Minute},
		{Name: "ok", URL: ok.srv.URL, Events: []Class{Misfire}, Global: true},
	}})
	// The first delivery is in the hanging request before the burst.
	n.Emit(failed("j"))
	waitFor(t, func() bool { return len(hang.requests()) == 1 })

	const burst = 20_000
	var slowest time.Duration
	begin := time.Now()
	for i := range burst {
		t0 := time.Now()
		n.Emit(failed("j"))
		if i%1000 == 0 {
			n.Emit(events.Event{Kind: events.Misfired, Job: "j", Count: 1, FireTime: fire})
		}
		slowest = max(slowest, time.Since(t0))
	}
	total := time.Since(begin)
	// 20,000 Emits with -race take tens of ms; the bounds leave room for
	// a loaded machine and are still far from the receiver's minute.
	if total > 2*time.Second || slowest > 500*time.Millisecond {
		t.Errorf("%d Emits took %v, the slowest %v: Emit waits on the receiver", burst, total, slowest)
	}
	if n.Dropped() == 0 {
		t.Error("nothing dropped although the receiver hangs and its queue holds 8")
	}
	if !strings.Contains(logs.String(), "dropping alerts") {
		t.Errorf("drops are not logged:\n%s", logs)
	}
	waitFor(t, func() bool { return len(ok.requests()) >= 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	begin = time.Now()
	if err := n.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v, want DeadlineExceeded (deliveries abandoned)", err)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("Close took %v after its deadline of 100ms", d)
	}
	n.Emit(failed("j")) // after Close: dropped, no panic
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestGlobalAndPerJobRouting: a global receiver hears of every job; a
// non-global one only of the jobs that name it; a name this process does
// not define is logged and skipped.
func TestGlobalAndPerJobRouting(t *testing.T) {
	g, a, b := newSink(t, nil), newSink(t, nil), newSink(t, nil)
	jobs := map[string][]string{"one": {"a", "nowhere", "g"}, "two": nil}
	var mu sync.Mutex
	n, logs := start(t, Config{
		Receivers: []Receiver{
			{Name: "g", URL: g.srv.URL, Events: []Class{Failure}, Global: true},
			{Name: "a", URL: a.srv.URL, Events: []Class{Failure}},
			{Name: "b", URL: b.srv.URL, Events: []Class{Failure}},
		},
		JobReceivers: func(job string) []string { mu.Lock(); defer mu.Unlock(); return jobs[job] },
	})
	n.Emit(failed("one"))
	n.Emit(failed("two"))
	n.Emit(failed("three"))
	closeNow(t, n)
	if got := len(g.requests()); got != 3 {
		t.Errorf("global receiver got %d alerts, want 3 (one per job; named by job one too, still once)", got)
	}
	if reqs := a.requests(); len(reqs) != 1 || !bytes.Contains(reqs[0].body, []byte(`"job":"one"`)) {
		t.Errorf("receiver a got %d alerts, want job one's only", len(reqs))
	}
	if got := len(b.requests()); got != 0 {
		t.Errorf("receiver b, named by no job, got %d alerts", got)
	}
	if l := logs.String(); !strings.Contains(l, "does not define") || !strings.Contains(l, "receiver=nowhere") {
		t.Errorf("the unknown receiver name is not logged:\n%s", l)
	}
}

// TestEventFilter: each receiver gets the classes it subscribes to; a
// retried run alerts only receivers that take retries; a run that ended as
// it should and the other kinds never alert.
func TestEventFilter(t *testing.T) {
	timeouts, failures, retries, ops := newSink(t, nil), newSink(t, nil), newSink(t, nil), newSink(t, nil)
	n, _ := start(t, Config{Receivers: []Receiver{
		{Name: "timeouts", URL: timeouts.srv.URL, Events: []Class{Timeout}, Global: true},
		{Name: "failures", URL: failures.srv.URL, Events: []Class{Failure}, Global: true},
		{Name: "retries", URL: retries.srv.URL, Events: []Class{Failure}, Global: true, Retries: true},
		{Name: "ops", URL: ops.srv.URL, Events: []Class{Misfire, Leadership}, Global: true},
	}})
	given := failed("j")
	lost := failed("j")
	lost.State, lost.Outcome = executor.StateLost, events.Failover
	retry := failed("j")
	retry.Outcome = events.Retry
	timedOut := failed("j")
	timedOut.State = executor.StateTimedOut
	finished := failed("j")
	finished.State, finished.Outcome = executor.StateFinished, events.Done
	killed := failed("j")
	killed.State, killed.Outcome = executor.StateKilled, events.Done
	// A DAEMON task that exited 0 is run again: no failure.
	daemonEnded := failed("j")
	daemonEnded.State, daemonEnded.Outcome = executor.StateFinished, events.Failover
	for _, ev := range []events.Event{given, lost, retry, timedOut, finished, killed, daemonEnded, {Kind: events.JobRemoved, Job: "j"},
		{Kind: events.Misfired, Job: "j", Count: 2}, {Kind: events.Leadership, Leader: false, Term: 3},
		{Kind: events.Fired, Job: "j"}, {Kind: events.Launched, Job: "j"}, {Kind: events.Running, Job: "j"}} {
		n.Emit(ev)
	}
	closeNow(t, n)
	classesOf := func(s *sink) string {
		var out []string
		for _, r := range s.requests() {
			var p Payload
			_ = json.Unmarshal(r.body, &p)
			out = append(out, string(p.Event)+"/"+string(p.State)+"/"+string(p.Outcome))
		}
		slices.Sort(out) // two workers post in either order
		return strings.Join(out, " ")
	}
	for _, c := range []struct {
		s    *sink
		want string
	}{
		{timeouts, "timeout/TIMED_OUT/given_up"},
		{failures, "failure/FAILED/given_up failure/LOST/failover"},
		{retries, "failure/FAILED/given_up failure/FAILED/retry failure/LOST/failover"},
		{ops, "leadership// misfire//"},
	} {
		if got := classesOf(c.s); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
}

func TestReceiverValidation(t *testing.T) {
	const secretURL = "https://hooks.example/services/T0/B0/SECRETPATH"
	ok := Receiver{Name: "ops", URL: secretURL, Events: []Class{Failure}}
	for _, c := range []struct {
		name string
		edit func(*Receiver)
		want string
	}{
		{"bad name", func(r *Receiver) { r.Name = "a b" }, "name"},
		{"empty name", func(r *Receiver) { r.Name = "" }, "name"},
		{"ftp", func(r *Receiver) { r.URL = "ftp://h/SECRETPATH" }, "http:// or https://"},
		{"file", func(r *Receiver) { r.URL = "file:///etc/SECRETPATH" }, "http:// or https://"},
		{"no host", func(r *Receiver) { r.URL = "http:///SECRETPATH" }, "no host"},
		{"unparsable", func(r *Receiver) { r.URL = "http://h:port/SECRETPATH\x00" }, "does not parse"},
		{"fragment", func(r *Receiver) { r.URL = secretURL + "#x" }, "fragment"},
		{"format", func(r *Receiver) { r.Format = "xml" }, "format"},
		{"no events", func(r *Receiver) { r.Events = nil }, "events is empty"},
		{"unknown event", func(r *Receiver) { r.Events = []Class{"success"} }, `"success" is unknown`},
		{"event twice", func(r *Receiver) { r.Events = []Class{Failure, Failure} }, "twice"},
		{"leadership not global", func(r *Receiver) { r.Events = []Class{Leadership} }, "only a global receiver"},
		{"empty secret", func(r *Receiver) { r.Secret = []byte{} }, "secret is empty"},
		{"attempts", func(r *Receiver) { r.MaxAttempts = MaxMaxAttempts + 1 }, "maxAttempts"},
		{"negative attempts", func(r *Receiver) { r.MaxAttempts = -1 }, "maxAttempts"},
		{"timeout", func(r *Receiver) { r.Timeout = MaxTimeout + 1 }, "timeout"},
		{"negative timeout", func(r *Receiver) { r.Timeout = -1 }, "timeout"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := ok
			r.Events = append([]Class(nil), ok.Events...)
			c.edit(&r)
			_, err := New(Config{Receivers: []Receiver{r}})
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New = %v, want ErrInvalidConfig saying %q", err, c.want)
			}
			if strings.Contains(err.Error(), "SECRETPATH") {
				t.Fatalf("the error quotes the URL: %v", err)
			}
		})
	}
	_, err := New(Config{Receivers: []Receiver{ok, ok}})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "twice") {
		t.Errorf("two receivers of one name: %v", err)
	}
	for _, cfg := range []Config{{QueueSize: MaxQueueSize + 1}, {Workers: -1}, {Backoff: MaxBackoff + 1}, {Backoff: time.Minute, MaxBackoff: time.Second}} {
		if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New(%+v) = %v, want ErrInvalidConfig", cfg, err)
		}
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("ops.key", "the-key\nignored")
	write("empty.key", "\n")
	good := write("good.json", `{"receivers":[
		{"name":"ops","url":"https://a.example/h","secretFile":"ops.key","events":["failure","leadership"],"global":true,"timeout":"3s","maxAttempts":5,"retries":true},
		{"name":"chat","url":"http://b.example/h","format":"slack","events":["timeout"]}]}`)
	rs, err := LoadFile(good)
	if err != nil {
		t.Fatalf("LoadFile: %v", err)
	}
	if len(rs) != 2 || string(rs[0].Secret) != "the-key" || rs[0].Timeout != 3*time.Second || rs[0].MaxAttempts != 5 || !rs[0].Global || !rs[0].Retries ||
		rs[1].Secret != nil || rs[1].Format != Slack || rs[1].Timeout != DefaultTimeout || rs[1].MaxAttempts != DefaultMaxAttempts || rs[1].Global {
		t.Fatalf("LoadFile = %+v", rs)
	}
	many := `{"receivers":[` + strings.Repeat(`{"name":"x","url":"http://h/","events":["failure"]},`, MaxReceivers) + `{"name":"y","url":"http://h/","events":["failure"]}]}`
	for _, c := range []struct{ name, body, want string }{
		{"unknown field", `{"receivers":[{"name":"x","url":"http://h/","events":["failure"],"headers":{}}]}`, "unknown field"},
		{"not json", `receivers: []`, "invalid character"},
		{"trailing", `{"receivers":[]} {}`, "after the JSON object"},
		{"missing secret file", `{"receivers":[{"name":"x","url":"http://h/","events":["failure"],"secretFile":"nope.key"}]}`, "secretFile"},
		{"empty secret file", `{"receivers":[{"name":"x","url":"http://h/","events":["failure"],"secretFile":"empty.key"}]}`, "empty"},
		{"bad timeout", `{"receivers":[{"name":"x","url":"http://h/","events":["failure"],"timeout":"soon"}]}`, "not a duration"},
		{"too many", many, "at most 64"},
		{"bad receiver", `{"receivers":[{"name":"x","url":"gopher://h/","events":["failure"]}]}`, "http://"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadFile(write("bad.json", c.body))
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("LoadFile = %v, want ErrInvalidConfig saying %q", err, c.want)
			}
		})
	}
	if _, err := LoadFile(filepath.Join(dir, "missing.json")); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("a missing file: %v", err)
	}
}

// TestLogsNeverCarryTheURL: a webhook URL's path (Slack's) and user info
// are credentials; a failed delivery's log names the receiver only.
func TestLogsNeverCarryTheURL(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	n, logs := start(t, Config{Receivers: []Receiver{{Name: "down", URL: "http://user:PASSWORD@" + addr + "/services/SECRETPATH", Secret: []byte("KEYBYTES"),
		Events: []Class{Failure}, Global: true, MaxAttempts: 2}}})
	n.Emit(failed("j"))
	closeNow(t, n)
	l := logs.String()
	if n.Failed() != 1 || !strings.Contains(l, "receiver=down") {
		t.Fatalf("failed %d; log:\n%s", n.Failed(), l)
	}
	for _, secret := range []string{"SECRETPATH", "PASSWORD", "KEYBYTES", "user:"} {
		if strings.Contains(l, secret) {
			t.Errorf("the log carries %q:\n%s", secret, l)
		}
	}
}

// TestEmitNeverWaitsOnTheRouter: even while routing is stuck (a slow
// JobReceivers), Emit returns at once and drops what has no room.
func TestEmitNeverWaitsOnTheRouter(t *testing.T) {
	s := newSink(t, nil)
	stuck := make(chan struct{})
	var once sync.Once
	unstick := func() { once.Do(func() { close(stuck) }) }
	t.Cleanup(unstick) // before the Notifier's Close
	n, _ := start(t, Config{QueueSize: 4, Receivers: []Receiver{{Name: "ops", URL: s.srv.URL, Events: []Class{Failure}, Global: true}},
		JobReceivers: func(string) []string { <-stuck; return nil }})
	begin := time.Now()
	for range 10_000 {
		n.Emit(failed("j"))
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("10,000 Emits took %v while routing was stuck", d)
	}
	if n.Dropped() < 10_000-5 {
		t.Errorf("dropped %d of 10,000 with a queue of 4 and routing stuck", n.Dropped())
	}
	unstick()
	closeNow(t, n)
	if got := len(s.requests()); got < 1 || got > 5 {
		t.Errorf("receiver got %d alerts, want the 1 to 5 that found room", got)
	}
}

func TestVerifyRefusesForgedAndStaleDeliveries(t *testing.T) {
	secret, body := []byte("k"), []byte(`{"event":"failure"}`)
	now := time.Unix(1_800_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	sig := Sign(secret, ts, body)
	if err := Verify(secret, ts, sig, body, now.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatalf("a fresh, signed delivery: %v", err)
	}
	for _, c := range []struct {
		name    string
		secret  []byte
		ts, sig string
		body    []byte
		want    error
	}{
		{"other key", []byte("x"), ts, sig, body, ErrBadSignature},
		{"changed body", secret, ts, sig, []byte(`{"event":"timeout"}`), ErrBadSignature},
		{"changed timestamp", secret, strconv.FormatInt(now.Unix()+1, 10), sig, body, ErrBadSignature},
		{"no signature", secret, ts, "", body, ErrBadSignature},
		{"replayed later", secret, strconv.FormatInt(now.Add(-10*time.Minute).Unix(), 10), "", body, ErrStale},
		{"not a number", secret, "yesterday", sig, body, ErrStale},
	} {
		if err := Verify(c.secret, c.ts, c.sig, c.body, now, 5*time.Minute); !errors.Is(err, c.want) {
			t.Errorf("%s: Verify = %v, want %v", c.name, err, c.want)
		}
	}
}
