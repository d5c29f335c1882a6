package local

import (
	"archive/tar"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hasched/hasched/scheduler/apppkg/apppkgtest"
	"github.com/hasched/hasched/scheduler/executor"
)

// tarEntry is one entry of a test archive.
type tarEntry = apppkgtest.Entry

func makeTarGz(t *testing.T, entries []tarEntry) []byte { return apppkgtest.TarGz(t, entries...) }

func writeFile(t *testing.T, path string, b []byte) string {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// appTarball is an app whose bootstrap script prints its working dir.
func appTarball(t *testing.T) []byte {
	return makeTarGz(t, []tarEntry{
		{Name: "bin/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "bin/start.sh", Mode: 0o755, Body: "#!/bin/sh\necho \"app says $1\" >/dev/null\ncat conf/greeting\npwd >\"$HASCHED_TASK_DIR/pwd\"\n"},
		{Name: "conf/greeting", Body: "hello from the app\n"},
		{Name: "conf/link", Type: tar.TypeSymlink, Link: "greeting"},
		{Name: "./", Type: tar.TypeDir, Mode: 0o755},
	})
}

func TestAppFetchFromFileURL(t *testing.T) {
	pkg := writeFile(t, filepath.Join(t.TempDir(), "myapp-1.0.tar.gz"), appTarball(t))
	e := newTestExec(t, testConfig(t, t.TempDir()))

	cached := task("t-app-cached", "./bin/start.sh")
	cached.AppURL, cached.AppCacheEnable = "file://"+pkg, true
	again := cached
	again.ID = "t-app-cached-2"
	fresh := task("t-app-fresh", "sh bin/start.sh && cat conf/link")
	fresh.AppURL = "file://" + pkg
	e.launch(cached, again, fresh)

	for _, tk := range []executor.Task{cached, again, fresh} {
		e.waitState(tk.ID, executor.StateFinished, false)
		out, _ := os.ReadFile(filepath.Join(e.taskDir(tk.ID), "stdout"))
		if !strings.HasPrefix(string(out), "hello from the app\n") {
			t.Errorf("%s: stdout %q", tk.ID, out)
		}
	}
	// Cached: one shared copy under apps/<app>/, which no task runs in.
	cacheDirs, _ := filepath.Glob(filepath.Join(e.cfg.appsDir(), "app1", "*"))
	if len(cacheDirs) != 1 {
		t.Fatalf("app cache holds %v, want one copy", cacheDirs)
	}
	// Every task runs in its own copy, in its task dir.
	for _, tk := range []executor.Task{cached, again, fresh} {
		want := filepath.Join(e.taskDir(tk.ID), "app")
		if pwd, _ := os.ReadFile(filepath.Join(e.taskDir(tk.ID), "pwd")); strings.TrimSpace(string(pwd)) != want {
			t.Errorf("%s ran in %q, want its own copy %q", tk.ID, pwd, want)
		}
	}
	if out, _ := os.ReadFile(filepath.Join(e.taskDir(fresh.ID), "stdout")); !strings.HasSuffix(string(out), "hello from the app\nhello from the app\n") {
		t.Errorf("symlink inside the app not followed: %q", out)
	}
}

func TestAppFetchRefusesEscapingTarball(t *testing.T) {
	base := t.TempDir()
	victim := filepath.Join(base, "escaped")
	pkg := writeFile(t, filepath.Join(base, "evil.tar.gz"), makeTarGz(t, []tarEntry{
		{Name: "ok.txt", Body: "fine"},
		{Name: "../../../../../../../.." + victim, Body: "pwned"},
	}))
	e := newTestExec(t, testConfig(t, filepath.Join(base, "work")))
	good := task("t-after-evil", "true")
	evil := task("t-evil", "echo should not run; exit 0")
	evil.AppURL = "file://" + pkg
	// A package failure fails its task, not the batch.
	e.launch(evil, good)
	s := e.waitState(evil.ID, executor.StateFailed, false)
	if !strings.Contains(s.Message, ErrUnsafeArchive.Error()) || !strings.Contains(s.Message, "parent directory reference") {
		t.Errorf("message %q", s.Message)
	}
	e.waitState(good.ID, executor.StateFinished, false)
	if _, err := os.Stat(victim); !os.IsNotExist(err) {
		t.Errorf("archive wrote outside its directory: %v", err)
	}
	// The verdict is on disk for later executors.
	if err := e.Reconcile(context.Background(), []string{evil.ID}); err != nil {
		t.Fatal(err)
	}
	e.waitState(evil.ID, executor.StateFailed, true)
	// Nothing half-unpacked is left behind.
	if left, _ := os.ReadDir(e.cfg.tmpDir()); len(left) != 0 {
		t.Errorf("tmp/ not cleaned: %v", left)
	}
}

func TestAppFetchMissingPackage(t *testing.T) {
	e := newTestExec(t, testConfig(t, t.TempDir()))
	tk := task("t-nopkg", "true")
	tk.AppURL = "file:///nonexistent/pkg.tar.gz"
	e.launch(tk)
	s := e.waitState(tk.ID, executor.StateFailed, false)
	if !strings.HasPrefix(s.Message, ErrFetch.Error()) || !strings.Contains(s.Message, "/nonexistent/pkg.tar.gz") {
		t.Errorf("message %q", s.Message)
	}
	bad := task("t-badurl", "true")
	bad.AppURL = "ftp://example.invalid/x.tgz"
	e.launch(bad)
	if s := e.waitState(bad.ID, executor.StateFailed, false); !strings.Contains(s.Message, "not supported") {
		t.Errorf("message %q", s.Message)
	}
}

func TestAppFetchHTTP(t *testing.T) {
	pkg := appTarball(t)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(pkg)
	}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/app.tar.gz":
			_, _ = w.Write(pkg)
		case "/moved.tar.gz":
			http.Redirect(w, r, "/app.tar.gz", http.StatusFound)
		case "/elsewhere.tar.gz":
			http.Redirect(w, r, other.URL+"/app.tar.gz", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	e := newTestExec(t, testConfig(t, t.TempDir()))
	direct := task("t-http", "./bin/start.sh")
	direct.AppURL = srv.URL + "/app.tar.gz"
	moved := task("t-http-moved", "./bin/start.sh")
	moved.AppURL = srv.URL + "/moved.tar.gz"
	elsewhere := task("t-http-elsewhere", "./bin/start.sh")
	elsewhere.AppURL = srv.URL + "/elsewhere.tar.gz"
	missing := task("t-http-404", "./bin/start.sh")
	missing.AppURL = srv.URL + "/nope.tar.gz"
	e.launch(direct, moved, elsewhere, missing)

	e.waitState(direct.ID, executor.StateFinished, false)
	e.waitState(moved.ID, executor.StateFinished, false)
	if s := e.waitState(elsewhere.ID, executor.StateFailed, false); !strings.Contains(s.Message, "redirect") {
		t.Errorf("redirect to another host: %q", s.Message)
	}
	if s := e.waitState(missing.ID, executor.StateFailed, false); !strings.Contains(s.Message, "404") {
		t.Errorf("404: %q", s.Message)
	}
}
