package local

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
)

// heldServer serves an app package on loopback; a request for a held path
// waits until the test releases it (or its client gives up), and says
// when it arrived. Tests order on these events, not on clocks.
type heldServer struct {
	*httptest.Server
	pkg []byte

	mu      sync.Mutex
	held    map[string]chan struct{} // path → closed by release
	arrived map[string]chan struct{} // path → closed on the first request
}

func newHeldServer(t *testing.T, pkg []byte, heldPaths ...string) *heldServer {
	s := &heldServer{pkg: pkg, held: map[string]chan struct{}{}, arrived: map[string]chan struct{}{}}
	for _, p := range heldPaths {
		s.held[p] = make(chan struct{})
		s.arrived[p] = make(chan struct{})
	}
	stop := make(chan struct{})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		gate, arrived := s.held[r.URL.Path], s.arrived[r.URL.Path]
		if arrived != nil {
			select {
			case <-arrived:
			default:
				close(arrived)
			}
		}
		s.mu.Unlock()
		if gate != nil {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			case <-stop:
				return
			}
		}
		_, _ = w.Write(s.pkg)
	}))
	// Registered before the executors' cleanups, so it runs after them;
	// stop frees any handler still held so that Close can return.
	t.Cleanup(func() {
		close(stop)
		s.Close()
	})
	return s
}

func (s *heldServer) release(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.held[path])
}

func (s *heldServer) waitArrived(t *testing.T, path string) {
	t.Helper()
	select {
	case <-s.arrived[path]:
	case <-time.After(waitLimit):
		t.Fatalf("no request for %s", path)
	}
}

// launchAsync runs a Launch in a goroutine the test owns: its result comes
// on the returned channel, and cleanup waits for it.
func launchAsync(t *testing.T, e *testExec, ctx context.Context, tasks ...executor.Task) <-chan error {
	done := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		done <- e.Launch(ctx, tasks)
	}()
	t.Cleanup(wg.Wait) // after the executor's Close (registered earlier) ends it
	return done
}

func waitLaunch(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(waitLimit):
		t.Fatal("Launch did not return")
		return nil
	}
}

// A fetch slower than any short budget, but within FetchTimeout, succeeds
// for a caller whose context has no deadline: Launch puts no cap of its
// own below FetchTimeout.
func TestSlowFetchWithinFetchTimeoutSucceedsWithoutACallerDeadline(t *testing.T) {
	srv := newHeldServer(t, appTarball(t), "/slow.tar.gz")
	cfg := testConfig(t, t.TempDir())
	cfg.FetchTimeout = time.Minute
	e := newTestExec(t, cfg)
	tk := task("t-slow-fetch", "./bin/start.sh")
	tk.AppURL, tk.AppCacheEnable = srv.URL+"/slow.tar.gz", true

	done := launchAsync(t, e, context.Background(), tk)
	srv.waitArrived(t, "/slow.tar.gz")
	// The scheduler used to cap Launch at 30 s, below FetchTimeout; a
	// second here stands for it.
	const shortBudget = time.Second
	time.Sleep(shortBudget)
	select {
	case err := <-done:
		t.Fatalf("Launch returned (%v) while the package was still downloading", err)
	default:
	}
	if ss := e.forTask(tk.ID); len(ss) != 0 {
		t.Fatalf("statuses before the package arrived: %+v", ss)
	}
	srv.release("/slow.tar.gz")
	if err := waitLaunch(t, done); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	e.waitState(tk.ID, executor.StateFinished, false)
}

// A fetch that FetchTimeout cuts off fails its task with ErrFetchTimeout,
// once: the task is claimed and FAILED (not left unclaimed for endless
// retries), so a relaunch reports that instead of fetching again.
func TestFetchBeyondFetchTimeoutFailsTheTask(t *testing.T) {
	srv := newHeldServer(t, appTarball(t), "/stuck.tar.gz")
	cfg := testConfig(t, t.TempDir())
	cfg.FetchTimeout = 300 * time.Millisecond
	e := newTestExec(t, cfg)
	tk := task("t-stuck-fetch", "./bin/start.sh")
	tk.AppURL = srv.URL + "/stuck.tar.gz"

	if err := e.Launch(context.Background(), []executor.Task{tk}); err != nil {
		t.Fatalf("Launch: %v (a fetch timeout is the task's failure, not Launch's)", err)
	}
	s := e.waitState(tk.ID, executor.StateFailed, false)
	if !strings.HasPrefix(s.Message, ErrFetchTimeout.Error()) || !strings.Contains(s.Message, "FetchTimeout 300ms") ||
		!strings.Contains(s.Message, "/stuck.tar.gz") {
		t.Errorf("message %q: want the timeout, FetchTimeout and the URL", s.Message)
	}
	// The next term's relaunch finds the failure, and neither fetches
	// nor claims again.
	next := newTestExec(t, cfg)
	next.launch(tk)
	next.waitState(tk.ID, executor.StateFailed, false)
	if n := countState(next.forTask(tk.ID), executor.StateStaging); n != 0 {
		t.Errorf("the relaunch claimed the task again")
	}

	_, err := e.fetchApp(context.Background(), tk)
	if !errors.Is(err, ErrFetchTimeout) || !errors.Is(err, ErrFetch) {
		t.Errorf("fetchApp: %v, want ErrFetchTimeout (an ErrFetch)", err)
	}
}

// A caller giving up during the fetch gets its context's error and the
// task is not claimed: a later Launch can still run it.
func TestCallerGivingUpDuringTheFetchClaimsNothing(t *testing.T) {
	srv := newHeldServer(t, appTarball(t), "/held.tar.gz")
	e := newTestExec(t, testConfig(t, t.TempDir()))
	tk := task("t-given-up", "./bin/start.sh")
	tk.AppURL = srv.URL + "/held.tar.gz"

	ctx, cancel := context.WithCancel(context.Background())
	done := launchAsync(t, e, ctx, tk)
	srv.waitArrived(t, "/held.tar.gz")
	cancel()
	if err := waitLaunch(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Launch: %v, want context.Canceled", err)
	}
	if ss := e.forTask(tk.ID); len(ss) != 0 {
		t.Errorf("a launch given up reported %+v", ss)
	}
	srv.release("/held.tar.gz")
	e.launch(tk)
	e.waitState(tk.ID, executor.StateFinished, false)
}

// A slow fetch of app A holds up no launch of app B: B's task runs while
// A's package is still held by the server.
func TestSlowFetchOfOneAppDoesNotDelayAnother(t *testing.T) {
	srv := newHeldServer(t, appTarball(t), "/a.tar.gz")
	e := newTestExec(t, testConfig(t, t.TempDir()))
	a := task("t-app-a", "./bin/start.sh")
	a.App, a.AppURL, a.AppCacheEnable = "app-a", srv.URL+"/a.tar.gz", true
	b := task("t-app-b", "./bin/start.sh")
	b.App, b.AppURL, b.AppCacheEnable = "app-b", srv.URL+"/b.tar.gz", true

	doneA := launchAsync(t, e, context.Background(), a)
	srv.waitArrived(t, "/a.tar.gz")
	doneB := launchAsync(t, e, context.Background(), b)
	if err := waitLaunch(t, doneB); err != nil {
		t.Fatalf("Launch of B: %v", err)
	}
	e.waitState(b.ID, executor.StateFinished, false)
	select {
	case err := <-doneA:
		t.Fatalf("A's Launch returned (%v) before its package was released: the test proves nothing", err)
	default:
	}
	if ss := e.forTask(a.ID); len(ss) != 0 {
		t.Fatalf("A reported %+v before its package came", ss)
	}
	srv.release("/a.tar.gz")
	if err := waitLaunch(t, doneA); err != nil {
		t.Fatalf("Launch of A: %v", err)
	}
	e.waitState(a.ID, executor.StateFinished, false)
}

// The tasks of one Launch start together, not one after another: the
// second task's package is asked for while the first's is still held, and
// a task whose package is there runs before the held one is released.
// (A fire's shards come in one Launch; one by one, the last started some
// 40 ms after the first.)
func TestTasksOfOneLaunchStartTogether(t *testing.T) {
	srv := newHeldServer(t, appTarball(t), "/first.tar.gz", "/second.tar.gz")
	cfg := testConfig(t, t.TempDir())
	cfg.FetchTimeout = time.Minute // a held fetch must not fail and free the next
	e := newTestExec(t, cfg)
	first, second, free := task("t-together-1", "./bin/start.sh"), task("t-together-2", "./bin/start.sh"), task("t-together-3", "./bin/start.sh")
	first.AppURL, second.AppURL, free.AppURL = srv.URL+"/first.tar.gz", srv.URL+"/second.tar.gz", srv.URL+"/free.tar.gz"

	done := launchAsync(t, e, context.Background(), first, second, free)
	srv.waitArrived(t, "/first.tar.gz")
	srv.waitArrived(t, "/second.tar.gz")
	e.waitState(free.ID, executor.StateFinished, false)
	srv.release("/first.tar.gz")
	srv.release("/second.tar.gz")
	if err := waitLaunch(t, done); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	e.waitState(first.ID, executor.StateFinished, false)
	e.waitState(second.ID, executor.StateFinished, false)
}

// A task named twice in one Launch is started once.
func TestATaskNamedTwiceInOneLaunchStartsOnce(t *testing.T) {
	e := newTestExec(t, testConfig(t, t.TempDir()))
	tk := task("t-twice", "true")
	e.launch(tk, tk)
	e.waitState(tk.ID, executor.StateFinished, false)
	if n := countState(e.forTask(tk.ID), executor.StateStaging); n != 1 {
		t.Fatalf("%d STAGING statuses, want 1 (one start)", n)
	}
}
