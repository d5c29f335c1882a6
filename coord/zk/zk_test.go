package zk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/hasched/hasched/coord"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestConfigFromURL(t *testing.T) {
	for _, tc := range []struct {
		url     string
		want    Config
		wantErr string
	}{
		{url: "zk://h1:2181,h2:2182/prod?session-timeout=6s&connect-timeout=5s",
			want: Config{Servers: []string{"h1:2181", "h2:2182"}, Namespace: "prod", SessionTimeout: 6 * time.Second, ConnectTimeout: 5 * time.Second}},
		{url: "zk://127.0.0.1:2181", want: Config{Servers: []string{"127.0.0.1:2181"}, Namespace: "hasched"}},
		{url: "zk://127.0.0.1:2181/", want: Config{Servers: []string{"127.0.0.1:2181"}, Namespace: "hasched"}},
		{url: "ZK://h1/ns", want: Config{Servers: []string{"h1"}, Namespace: "ns"}},
		{url: "zk://h1/ns?ttl=5s", wantErr: `unknown query parameter "ttl"`},
		{url: "zk://h1/ns?session-timeout=soon", wantErr: `session-timeout="soon" is not a positive duration`},
		{url: "zk://h1/ns?session-timeout=-1s", wantErr: "not a positive duration"},
		{url: "zk://h1/ns?session-timeout=500ms", wantErr: "SessionTimeout 500ms is shorter than 1s"},
		{url: "zk://h1/ns?connect-timeout=1s&connect-timeout=2s", wantErr: `"connect-timeout" given 2 times`},
		{url: "zk:///ns", wantErr: "no servers"},
		{url: "zk://h1,,h2/ns", wantErr: "empty server"},
		{url: "zk://user:secret@h1/ns", wantErr: "user information"},
		{url: "zk://h1/a/b", wantErr: "namespace"},
		{url: "zk://h1/a%20b", wantErr: "namespace"},
		{url: "etcd://h1/ns", wantErr: "scheme"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			u, err := url.Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			got, err := configFromURL(u)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, coord.ErrUnsupportedURL) {
					t.Fatalf("configFromURL = %+v, %v; want an ErrUnsupportedURL containing %q", got, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Fatalf("error %q shows the password", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("configFromURL: %v", err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("configFromURL = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestOpenKnowsTheScheme(t *testing.T) {
	found := false
	for _, s := range coord.Schemes() {
		found = found || s == "zk"
	}
	if !found {
		t.Fatalf("coord.Schemes() = %v, want zk among them", coord.Schemes())
	}
	_, err := coord.Open(context.Background(), "zk://h1/ns?bogus=1")
	if err == nil || !strings.Contains(err.Error(), `"bogus"`) {
		t.Fatalf("coord.Open with an unknown parameter: %v, want an error naming it", err)
	}
}

func TestConfigValidation(t *testing.T) {
	ok := Config{Servers: []string{"h1:2181"}}
	got, err := ok.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if got.Namespace != DefaultNamespace || got.SessionTimeout != DefaultSessionTimeout || got.ConnectTimeout != DefaultConnectTimeout || got.Logger == nil {
		t.Fatalf("defaults not applied: %+v", got)
	}
	for _, tc := range []struct {
		name  string
		cfg   Config
		field string
	}{
		{"no servers", Config{}, "Servers"},
		{"blank server", Config{Servers: []string{"h1", " "}}, "Servers[1]"},
		{"bad namespace", Config{Servers: []string{"h1"}, Namespace: "a/b"}, "Namespace"},
		{"dot namespace", Config{Servers: []string{"h1"}, Namespace: ".."}, "Namespace"},
		{"short session", Config{Servers: []string{"h1"}, SessionTimeout: 999 * time.Millisecond}, "SessionTimeout"},
		{"negative session", Config{Servers: []string{"h1"}, SessionTimeout: -time.Second}, "SessionTimeout"},
		{"negative connect", Config{Servers: []string{"h1"}, ConnectTimeout: -time.Second}, "ConnectTimeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.cfg.withDefaults()
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("withDefaults(%+v) = %v, want an error naming %s", tc.cfg, err, tc.field)
			}
			if _, err := New(context.Background(), tc.cfg); err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("New(%+v) = %v, want an error naming %s", tc.cfg, err, tc.field)
			}
		})
	}
}

func TestCandidatesSortBySequenceNotName(t *testing.T) {
	names := []string{
		"_c_ffff-n_0000000002",
		"_c_0000-n_0000000010",
		"stray",
		"_c_aaaa-n_0000000001",
		"n_000000003x",
		"_c_1111-n_0000000009",
	}
	var got []string
	for _, c := range sortCandidates(names) {
		got = append(got, c.name)
	}
	want := []string{"_c_aaaa-n_0000000001", "_c_ffff-n_0000000002", "_c_1111-n_0000000009", "_c_0000-n_0000000010"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("sortCandidates = %q, want %q", got, want)
	}
	if seq, ok := sequence("job-0000000042"); !ok || seq != 42 {
		t.Fatalf("sequence(job-0000000042) = %d, %v", seq, ok)
	}
	for _, bad := range []string{"", "123", "job-00000000x2"} {
		if _, ok := sequence(bad); ok {
			t.Fatalf("sequence(%q) found a sequence number", bad)
		}
	}
}

func TestErrorsMapToCoordSentinels(t *testing.T) {
	for _, tc := range []struct{ in, want error }{
		{zk.ErrNoNode, coord.ErrNotFound},
		{zk.ErrNodeExists, coord.ErrExists},
		{zk.ErrBadVersion, coord.ErrVersionConflict},
		{zk.ErrNotEmpty, coord.ErrNotEmpty},
		{zk.ErrNoChildrenForEphemerals, coord.ErrEphemeralParent},
		{zk.ErrSessionExpired, coord.ErrSessionLost},
		{fmt.Errorf("wrapped: %w", zk.ErrNoNode), coord.ErrNotFound},
	} {
		if got := mapErr(tc.in); !errors.Is(got, tc.want) {
			t.Errorf("mapErr(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	other := errors.New("something else")
	if got := mapErr(other); got != other {
		t.Errorf("mapErr(%v) = %v, want it unchanged", other, got)
	}
	for _, err := range []error{zk.ErrNoServer, zk.ErrConnectionClosed, zk.ErrSessionExpired} {
		if !isConnErr(err) {
			t.Errorf("isConnErr(%v) = false", err)
		}
	}
	if isConnErr(zk.ErrNoNode) {
		t.Error("isConnErr(ErrNoNode) = true")
	}
}

// offline is a Coordinator whose connection must never be touched: a call
// that reaches the network panics on the nil conn.
func offline() *Coordinator {
	return &Coordinator{
		log:         hclog.NewNullLogger(),
		root:        "/ns",
		done:        make(chan struct{}),
		connDone:    make(chan struct{}),
		campaigns:   map[string]bool{},
		leaderships: map[*Leadership]struct{}{},
	}
}

func TestInvalidInputIsRefusedBeforeAnyRequest(t *testing.T) {
	c := offline()
	ctx := context.Background()
	big := make([]byte, coord.MaxValueSize+1)
	for _, p := range []string{"", "a", "/a/", "/a//b", "/a/../b", "/a\x00", "/\ue000", "/\U0001F600", strings.Repeat("/x", coord.MaxPathDepth+1)} {
		_, err := c.Create(ctx, p, nil)
		wantIs(t, "Create "+p, err, coord.ErrInvalidPath)
		_, err = c.Get(ctx, p)
		wantIs(t, "Get "+p, err, coord.ErrInvalidPath)
		_, err = c.Set(ctx, p, nil, coord.AnyVersion)
		wantIs(t, "Set "+p, err, coord.ErrInvalidPath)
		wantIs(t, "Delete "+p, c.Delete(ctx, p, 7), coord.ErrInvalidPath)
		wantIs(t, "DeleteTree "+p, c.DeleteTree(ctx, p), coord.ErrInvalidPath)
		_, err = c.Children(ctx, p)
		wantIs(t, "Children "+p, err, coord.ErrInvalidPath)
		_, err = c.Campaign(ctx, p, nil)
		wantIs(t, "Campaign "+p, err, coord.ErrInvalidPath)
		_, err = c.Leader(ctx, p)
		wantIs(t, "Leader "+p, err, coord.ErrInvalidPath)
	}
	for _, op := range []func() error{
		func() error { _, err := c.Create(ctx, "/", nil); return err },
		func() error { _, err := c.Get(ctx, "/"); return err },
		func() error { return c.Delete(ctx, "/", coord.AnyVersion) },
		func() error { return c.DeleteTree(ctx, "/") },
		func() error { _, err := c.Campaign(ctx, "/", nil); return err },
	} {
		wantIs(t, "an operation on the root", op(), coord.ErrInvalidPath)
	}
	_, err := c.Create(ctx, "/a", big)
	wantIs(t, "Create with a value too large", err, coord.ErrValueTooLarge)
	_, err = c.Set(ctx, "/a", big, coord.AnyVersion)
	wantIs(t, "Set with a value too large", err, coord.ErrValueTooLarge)
	_, err = c.Campaign(ctx, "/e", big)
	wantIs(t, "Campaign with a value too large", err, coord.ErrValueTooLarge)
}

func TestCallsOnAnEndedSessionFailWithoutARequest(t *testing.T) {
	c := offline()
	c.over = true
	close(c.done)
	ctx := context.Background()
	_, err := c.Get(ctx, "/a")
	wantIs(t, "Get after the session was lost", err, coord.ErrSessionLost)
	_, err = c.Campaign(ctx, "/e", nil)
	wantIs(t, "Campaign after the session was lost", err, coord.ErrSessionLost)
	c.closed = true
	_, err = c.Children(ctx, "/")
	wantIs(t, "Children after Close", err, coord.ErrClosed)
}

// A server that accepts connections and never answers: New must give up
// after ConnectTimeout and leave no goroutine behind (TestMain checks).
func TestNewGivesUpWhenNoSessionComes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- nc
		}
	}()
	defer func() {
		ln.Close()
		for nc := range accepted {
			nc.Close()
		}
	}()

	start := time.Now()
	_, err = New(context.Background(), Config{Servers: []string{ln.Addr().String()}, SessionTimeout: 2 * time.Second, ConnectTimeout: 300 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("New against a silent server: %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("New took %v to give up with a 300ms ConnectTimeout", d)
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err = New(ctx, Config{Servers: []string{ln.Addr().String()}, SessionTimeout: 2 * time.Second})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("New with a cancelled context: %v, want Canceled", err)
	}
}

func wantIs(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got %v, want %v", what, err, want)
	}
}

func TestMultiOutcomeNamesTheFailedOp(t *testing.T) {
	inconsistent := errors.New("unknown error: -2") // what go-zookeeper makes of the ops after the failed one
	ok := []zk.MultiResponse{{}, {String: "/a"}, {Stat: &zk.Stat{Mzxid: 7}}}

	res, err := multiOutcome(ok, nil, 3, true)
	if err != nil || len(res) != 2 || res[0].String != "/a" || res[1].Stat.Mzxid != 7 {
		t.Fatalf("guarded success: %+v, %v; want the two ops' results without the check's", res, err)
	}
	res, err = multiOutcome(ok, nil, 3, false)
	if err != nil || len(res) != 3 {
		t.Fatalf("unguarded success: %+v, %v; want all three results", res, err)
	}

	for _, checkErr := range []error{zk.ErrNoNode, zk.ErrBadVersion} {
		_, err = multiOutcome([]zk.MultiResponse{{Error: checkErr}, {Error: inconsistent}}, checkErr, 2, true)
		wantIs(t, fmt.Sprintf("the check failing with %v", checkErr), err, coord.ErrNotLeader)
		if errors.Is(err, zk.ErrNoNode) || failedOp(err) != -1 {
			t.Fatalf("the check's failure %v must not pass for the failure of an op", err)
		}
	}

	for _, tc := range []struct {
		res     []zk.MultiResponse
		guarded bool
		index   int
		want    error
	}{
		{[]zk.MultiResponse{{}, {}, {Error: zk.ErrNodeExists}}, true, 1, coord.ErrExists},
		{[]zk.MultiResponse{{}, {Error: zk.ErrNoChildrenForEphemerals}, {Error: inconsistent}}, true, 0, coord.ErrEphemeralParent},
		{[]zk.MultiResponse{{Error: zk.ErrNoNode}, {Error: inconsistent}}, false, 0, coord.ErrNotFound},
		{[]zk.MultiResponse{{}, {Error: zk.ErrNotEmpty}}, false, 1, coord.ErrNotEmpty},
		{[]zk.MultiResponse{{}, {Error: zk.ErrBadVersion}}, true, 0, coord.ErrVersionConflict},
	} {
		firstErr := tc.res[slices.IndexFunc(tc.res, func(r zk.MultiResponse) bool { return r.Error != nil })].Error
		_, err := multiOutcome(tc.res, firstErr, len(tc.res), tc.guarded)
		if got := failedOp(err); got != tc.index {
			t.Errorf("%+v (guarded %v): failed op %d, want %d", tc.res, tc.guarded, got, tc.index)
		}
		if errors.Is(err, coord.ErrNotLeader) {
			t.Errorf("%+v (guarded %v): %v, an op's failure taken for the check's", tc.res, tc.guarded, err)
		}
		if got := mapErr(err); !errors.Is(got, tc.want) {
			t.Errorf("%+v (guarded %v): mapErr = %v, want %v", tc.res, tc.guarded, got, tc.want)
		}
	}

	// A request that failed as a whole has no results.
	_, err = multiOutcome(nil, zk.ErrConnectionClosed, 2, true)
	if !errors.Is(err, zk.ErrConnectionClosed) || failedOp(err) != -1 || errors.Is(err, coord.ErrNotLeader) {
		t.Fatalf("a failed request: %v, want ErrConnectionClosed as is", err)
	}
	_, err = multiOutcome([]zk.MultiResponse{{}}, nil, 2, true)
	if err == nil {
		t.Fatal("fewer results than ops taken for a success")
	}
}

// offlineLeadership is a term of an offline Coordinator; a fenced write that
// reached the network would panic on the nil conn.
func offlineLeadership(c *Coordinator) *Leadership {
	lost := make(chan struct{})
	return &Leadership{c: c, election: "/e", node: "/ns/e/_c_x-n_0000000001", lost: lost,
		guard: &guard{node: "/ns/e/_c_x-n_0000000001", lost: lost}}
}

func TestFencedWritesAfterTheTermFailWithoutARequest(t *testing.T) {
	c := offline()
	l := offlineLeadership(c)
	close(l.lost)
	w := l.Writer()
	ctx := context.Background()
	writes := func(path string) map[string]error {
		_, createErr := w.Create(ctx, path, nil)
		_, setErr := w.Set(ctx, path, nil, 5)
		_, setAnyErr := w.Set(ctx, path, nil, coord.AnyVersion)
		return map[string]error{
			"Create":             createErr,
			"Set":                setErr,
			"Set(AnyVersion)":    setAnyErr,
			"Delete":             w.Delete(ctx, path, 5),
			"Delete(AnyVersion)": w.Delete(ctx, path, coord.AnyVersion),
			"DeleteTree":         w.DeleteTree(ctx, path),
		}
	}
	for op, err := range writes("/a/b") {
		wantIs(t, op+" after the term", err, coord.ErrNotLeader)
	}
	// Validation comes first.
	for op, err := range writes("/a/") {
		wantIs(t, op+" of a bad path after the term", err, coord.ErrInvalidPath)
	}
	_, err := w.Create(ctx, "/a", make([]byte, coord.MaxValueSize+1))
	wantIs(t, "Create of a value too large after the term", err, coord.ErrValueTooLarge)

	// Then the end of the session.
	c.over = true
	close(c.done)
	for op, err := range writes("/a/b") {
		wantIs(t, op+" after the session was lost", err, coord.ErrSessionLost)
	}
	c.closed = true
	for op, err := range writes("/a/b") {
		wantIs(t, op+" after Close", err, coord.ErrClosed)
	}
}

func TestWatchRefusesBadPathsAndEndedSessions(t *testing.T) {
	c := offline()
	ctx := context.Background()
	for _, p := range []string{"", "a", "/a/", "/a//b", "/a/./b", "/\x01"} {
		_, err := c.Watch(ctx, p)
		wantIs(t, "Watch "+p, err, coord.ErrInvalidPath)
		_, err = c.WatchChildren(ctx, p)
		wantIs(t, "WatchChildren "+p, err, coord.ErrInvalidPath)
	}
	_, err := c.Watch(ctx, "/")
	wantIs(t, "Watch of the root", err, coord.ErrInvalidPath)

	c.over = true
	close(c.done)
	_, err = c.Watch(ctx, "/a")
	wantIs(t, "Watch after the session was lost", err, coord.ErrSessionLost)
	_, err = c.WatchChildren(ctx, "/")
	wantIs(t, "WatchChildren after the session was lost", err, coord.ErrSessionLost)
	c.closed = true
	_, err = c.Watch(ctx, "/a")
	wantIs(t, "Watch after Close", err, coord.ErrClosed)
	_, err = c.WatchChildren(ctx, "/a")
	wantIs(t, "WatchChildren after Close", err, coord.ErrClosed)
}

var nodeFields = eventFields[coord.NodeEvent]{
	resync: func(e *coord.NodeEvent) *bool { return &e.Resync },
	err:    func(e *coord.NodeEvent) *error { return &e.Err },
	ended:  func(err error) coord.NodeEvent { return coord.NodeEvent{Err: err} },
}

func valueEvent(v string) coord.NodeEvent {
	return coord.NodeEvent{Node: coord.Node{Path: "/a", Value: []byte(v)}, Exists: true}
}

func TestOfferKeepsOnlyTheNewestState(t *testing.T) {
	out := make(chan coord.NodeEvent, 1)
	offer(out, valueEvent("1"), nodeFields)
	offer(out, valueEvent("2"), nodeFields)
	if ev := <-out; string(ev.Node.Value) != "2" || ev.Resync {
		t.Fatalf("after two offers the reader got %+v, want the second state", ev)
	}

	// A resync replaced by a newer state leaves its mark on it.
	resync := valueEvent("3")
	resync.Resync = true
	offer(out, resync, nodeFields)
	offer(out, valueEvent("4"), nodeFields)
	if ev := <-out; string(ev.Node.Value) != "4" || !ev.Resync {
		t.Fatalf("a state replacing an unread resync: %+v, want value 4 with Resync", ev)
	}

	// The last word replaces whatever is unread.
	offer(out, resync, nodeFields)
	offer(out, coord.NodeEvent{Err: coord.ErrSessionLost}, nodeFields)
	if ev := <-out; !errors.Is(ev.Err, coord.ErrSessionLost) || ev.Exists || ev.Resync {
		t.Fatalf("the last event: %+v, want only the error", ev)
	}
	select {
	case ev := <-out:
		t.Fatalf("a second event %+v after the last one", ev)
	default:
	}
}

// A reader that takes events slowly, while a writer offers many, never
// holds the writer up, sees states only in order, and ends with the newest.
func TestOfferToASlowReaderEndsWithTheNewestState(t *testing.T) {
	out := make(chan coord.NodeEvent, 1)
	const n = 100000
	written := make(chan time.Duration, 1)
	go func() {
		defer close(out)
		start := time.Now()
		for i := range n {
			offer(out, valueEvent(strconv.Itoa(i)), nodeFields)
		}
		written <- time.Since(start)
	}()
	prev, got := -1, 0
	for ev := range out {
		i, err := strconv.Atoi(string(ev.Node.Value))
		if err != nil || i <= prev {
			t.Fatalf("event %q after %d: want increasing states", ev.Node.Value, prev)
		}
		prev = i
		got++
		time.Sleep(time.Millisecond)
	}
	if prev != n-1 {
		t.Fatalf("the reader ended with state %d, want %d", prev, n-1)
	}
	if d := <-written; got > n/10 {
		t.Fatalf("the reader, taking 1ms an event, got %d of %d states offered in %v: want the writer not held up", got, n, d)
	}
}
