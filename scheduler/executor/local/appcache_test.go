package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
)

func cachedAppTask(id, pkg, command string) executor.Task {
	tk := task(id, command)
	tk.AppURL, tk.AppCacheEnable = "file://"+pkg, true
	return tk
}

func stdoutOf(t *testing.T, e *testExec, id string) string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(e.taskDir(id), "stdout"))
	return string(b)
}

// cacheEntries lists the entries of the app cache of app1.
func cacheEntries(e *testExec) []string {
	dirs, _ := filepath.Glob(filepath.Join(e.cfg.appsDir(), "app1", "*"))
	return dirs
}

// A task that rewrites its app's files changes its own copy only: the next
// task of the same cached app runs the app as fetched.
func TestTaskCannotPoisonTheAppCache(t *testing.T) {
	pkg := writeFile(t, filepath.Join(t.TempDir(), "app.tar.gz"), appTarball(t))
	e := newTestExec(t, testConfig(t, t.TempDir()))
	poison := cachedAppTask("t-poison", pkg, `printf '#!/bin/sh\necho POISONED\n' >bin/start.sh`)
	e.launch(poison)
	e.waitState(poison.ID, executor.StateFinished, false)

	victim := cachedAppTask("t-victim", pkg, "./bin/start.sh")
	e.launch(victim)
	e.waitState(victim.ID, executor.StateFinished, false)
	if out := stdoutOf(t, e, victim.ID); strings.Contains(out, "POISONED") || !strings.HasPrefix(out, "hello from the app\n") {
		t.Errorf("the next task ran a poisoned app: %q", out)
	}
}

// An entry changed in place (by a task that found the cache, or anyone) no
// longer matches its digest: it is evicted and fetched again, never run.
func TestTamperedCacheEntryIsFetchedAgain(t *testing.T) {
	pkg := writeFile(t, filepath.Join(t.TempDir(), "app.tar.gz"), appTarball(t))
	e := newTestExec(t, testConfig(t, t.TempDir()))
	first := cachedAppTask("t-first", pkg, "./bin/start.sh")
	e.launch(first)
	e.waitState(first.ID, executor.StateFinished, false)
	entries := cacheEntries(e)
	if len(entries) != 1 {
		t.Fatalf("cache entries %v", entries)
	}
	writeFile(t, filepath.Join(entries[0], cacheTree, "bin", "start.sh"), []byte("#!/bin/sh\necho POISONED\n"))

	next := cachedAppTask("t-next", pkg, "./bin/start.sh")
	e.launch(next)
	e.waitState(next.ID, executor.StateFinished, false)
	if out := stdoutOf(t, e, next.ID); !strings.HasPrefix(out, "hello from the app\n") {
		t.Errorf("tampered entry was run: %q", out)
	}
	if b, _ := os.ReadFile(filepath.Join(entries[0], cacheTree, "bin", "start.sh")); strings.Contains(string(b), "POISONED") {
		t.Errorf("tampered entry still cached")
	}
}

func sha256Of(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// A package matching the app's checksum runs; one that does not fails its
// task with a clear message, and nothing of it is cached.
func TestAppChecksumIsVerified(t *testing.T) {
	body := appTarball(t)
	pkg := writeFile(t, filepath.Join(t.TempDir(), "app.tar.gz"), body)
	e := newTestExec(t, testConfig(t, t.TempDir()))

	good := cachedAppTask("t-sum-good", pkg, "./bin/start.sh")
	good.AppChecksum = sha256Of(body)
	bad := cachedAppTask("t-sum-bad", pkg, "./bin/start.sh")
	bad.App = "app-bad"
	bad.AppChecksum = sha256Of([]byte("another package"))
	badFresh := bad
	badFresh.ID, badFresh.AppCacheEnable = "t-sum-bad-fresh", false
	e.launch(good, bad, badFresh)

	e.waitState(good.ID, executor.StateFinished, false)
	for _, tk := range []executor.Task{bad, badFresh} {
		s := e.waitState(tk.ID, executor.StateFailed, false)
		if !strings.Contains(s.Message, "checksum mismatch") || !strings.Contains(s.Message, bad.AppChecksum) || !strings.Contains(s.Message, good.AppChecksum) {
			t.Errorf("%s: message %q", tk.ID, s.Message)
		}
		if _, err := os.Stat(filepath.Join(e.taskDir(tk.ID), "stdout")); !os.IsNotExist(err) {
			t.Errorf("%s: a task with a bad package was started", tk.ID)
		}
	}
	if dirs, _ := filepath.Glob(filepath.Join(e.cfg.appsDir(), "app-bad", "*")); len(dirs) != 0 {
		t.Errorf("a package failing its checksum was cached: %v", dirs)
	}
	_, err := e.fetchApp(context.Background(), bad)
	if !errors.Is(err, ErrChecksum) || !errors.Is(err, ErrFetch) {
		t.Errorf("fetchApp: %v, want ErrChecksum", err)
	}
}

// The cache is kept within AppCacheMaxBytes, least recently used first,
// and an entry older than AppCacheMaxAge is fetched again.
func TestAppCacheEvictionBySizeAndAge(t *testing.T) {
	base := t.TempDir()
	pkgA := writeFile(t, filepath.Join(base, "a.tar.gz"), appTarball(t))
	pkgB := writeFile(t, filepath.Join(base, "b.tar.gz"), appTarball(t))
	cfg := testConfig(t, t.TempDir())
	cfg.AppCacheMaxBytes = 150 // one entry (about 100 bytes of files), not two
	e := newTestExec(t, cfg)

	a := cachedAppTask("t-cache-a", pkgA, "./bin/start.sh")
	e.launch(a)
	e.waitState(a.ID, executor.StateFinished, false)
	entryA := e.cacheEntry(a)
	if _, err := os.Stat(entryA); err != nil {
		t.Fatalf("a not cached: %v", err)
	}
	old := time.Now().Add(-time.Minute)
	_ = os.Chtimes(entryA, old, old) // used longer ago than b will be

	b := cachedAppTask("t-cache-b", pkgB, "./bin/start.sh")
	e.launch(b)
	e.waitState(b.ID, executor.StateFinished, false)
	if _, err := os.Stat(entryA); !os.IsNotExist(err) {
		t.Errorf("least recently used entry kept beyond AppCacheMaxBytes: %v", err)
	}
	entryB := e.cacheEntry(b)
	if _, err := os.Stat(entryB); err != nil {
		t.Fatalf("b not cached: %v", err)
	}

	// Age: an entry fetched longer than AppCacheMaxAge (24h) ago goes.
	past := time.Now().Add(-25 * time.Hour)
	_ = os.Chtimes(filepath.Join(entryB, cacheDigest), past, past)
	e.evictCache()
	if _, err := os.Stat(entryB); !os.IsNotExist(err) {
		t.Errorf("entry older than AppCacheMaxAge kept: %v", err)
	}
}
