package main

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hasched/hasched/scheduler/apppkg/apppkgtest"
	"github.com/hasched/hasched/scheduler/executor/kube"
)

// fetchAppTarGz is a package with a script and a file below a directory;
// escape adds an entry that would land outside.
func fetchAppTarGz(t *testing.T, escape bool) []byte {
	t.Helper()
	entries := []apppkgtest.Entry{
		{Name: "bin/start.sh", Body: "#!/bin/sh\necho started\n", Mode: 0o755},
		{Name: "conf/app.conf", Body: "greeting=hi\n"},
	}
	if escape {
		entries = append(entries, apppkgtest.Entry{Name: "../outside", Body: "pwned"})
	}
	return apppkgtest.TarGz(t, entries...)
}

// fetchAppServer serves the packages, only to requests bearing the token
// in their query, as a presigned URL would be.
func fetchAppServer(t *testing.T, files map[string][]byte) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("token") != "s3cret-token" {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// noSecrets fails the test if the command's output holds the URL's
// credentials.
func noSecrets(t *testing.T, r result) {
	t.Helper()
	for _, s := range []string{"s3cret", "hunter2"} {
		if strings.Contains(r.stdout+r.stderr, s) {
			t.Errorf("output holds %q of the URL:\nstdout: %s\nstderr: %s", s, r.stdout, r.stderr)
		}
	}
}

// fetch-app unpacks the package into --dest, from $HASCHED_URL (as the
// Kubernetes executor's init container gives it) or --url, with or
// without a checksum, and prints the URL without its credentials.
func TestFetchAppUnpacksIntoDest(t *testing.T) {
	pkg := fetchAppTarGz(t, false)
	sum := sha256.Sum256(pkg)
	checksum := "sha256:" + hex.EncodeToString(sum[:])
	srv := fetchAppServer(t, map[string][]byte{"/myapp-1.0.tar.gz": pkg})
	rawURL := strings.Replace(srv.URL, "http://", "http://user:hunter2@", 1) + "/myapp-1.0.tar.gz?token=s3cret-token"

	if kube.FetchURLEnv != envName("url") {
		t.Fatalf("the Kubernetes executor gives the URL in $%s, fetch-app reads $%s", kube.FetchURLEnv, envName("url"))
	}
	base := t.TempDir()
	dest := filepath.Join(base, "task", "app")
	r := cli(t, map[string]string{kube.FetchURLEnv: rawURL}, "", "fetch-app", "--dest", dest, "--checksum", checksum).ok(t)
	noSecrets(t, r)
	if !strings.Contains(r.stdout, "fetched http://xxxxx@127.0.0.1") || !strings.Contains(r.stdout, dest) {
		t.Errorf("stdout %q: want the redacted URL and the directory", r.stdout)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "conf", "app.conf")); string(b) != "greeting=hi\n" {
		t.Errorf("conf/app.conf: %q", b)
	}
	if fi, err := os.Stat(filepath.Join(dest, "bin", "start.sh")); err != nil || fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("bin/start.sh: %v %v, want executable", fi, err)
	}
	if fi, err := os.Stat(dest); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("--dest: %v %v, want mode 0755 (the task may run as another user)", fi, err)
	}
	if left, _ := filepath.Glob(filepath.Join(base, "task", ".fetch-app-*")); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}

	// --url, no checksum, into an empty directory that exists.
	empty := filepath.Join(base, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	noSecrets(t, cli(t, nil, "", "fetch-app", "--url", rawURL, "--dest", empty).ok(t))
	if _, err := os.Stat(filepath.Join(empty, "bin", "start.sh")); err != nil {
		t.Errorf("into an empty directory: %v", err)
	}
}

// fetch-app fails with a clear message, and exit code 1, on a package
// that is not the one expected, one that cannot be had, one that would
// write outside --dest, and on bad flags; --dest is left as it was, and no
// output holds the URL's credentials.
func TestFetchAppFails(t *testing.T) {
	pkg := fetchAppTarGz(t, false)
	srv := fetchAppServer(t, map[string][]byte{"/app.tar.gz": pkg, "/evil.tar.gz": fetchAppTarGz(t, true)})
	secretURL := func(path string) string {
		return strings.Replace(srv.URL, "http://", "http://user:hunter2@", 1) + path + "?token=s3cret-token"
	}
	other := sha256.Sum256([]byte("another package"))
	otherSum := "sha256:" + hex.EncodeToString(other[:])
	base := t.TempDir()
	full := filepath.Join(base, "full")
	if err := os.MkdirAll(full, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(full, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"checksum mismatch", []string{"--url", secretURL("/app.tar.gz"), "--checksum", otherSum}, []string{"checksum mismatch", otherSum}},
		{"not found", []string{"--url", secretURL("/nope.tar.gz")}, []string{"HTTP 404"}},
		{"forbidden", []string{"--url", srv.URL + "/app.tar.gz?token=s3cret-wrong"}, []string{"HTTP 403"}},
		{"too large", []string{"--url", secretURL("/app.tar.gz"), "--max-bytes", "10"}, []string{"package too large"}},
		{"traversal", []string{"--url", secretURL("/evil.tar.gz")}, []string{"unsafe archive entry", "parent directory reference"}},
		{"no url", nil, []string{"--url", "$HASCHED_URL", "required"}},
		{"bad scheme", []string{"--url", "ftp://user:hunter2@h/x?token=s3cret"}, []string{"not supported"}},
		{"bad checksum", []string{"--url", secretURL("/app.tar.gz"), "--checksum", "md5:abc"}, []string{"--checksum", "invalid checksum"}},
		{"bad max bytes", []string{"--url", secretURL("/app.tar.gz"), "--max-bytes", "0"}, []string{"--max-bytes"}},
		{"bad timeout", []string{"--url", secretURL("/app.tar.gz"), "--timeout", "0s"}, []string{"--timeout"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dest := filepath.Join(base, strings.ReplaceAll(c.name, " ", "-"))
			r := cli(t, nil, "", append([]string{"fetch-app", "--dest", dest}, c.args...)...).fails(t, c.want...)
			noSecrets(t, r)
			if _, err := os.Stat(dest); !os.IsNotExist(err) {
				t.Errorf("--dest made by a failed fetch: %v", err)
			}
			if left, _ := filepath.Glob(filepath.Join(base, ".fetch-app-*")); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
	r := cli(t, nil, "", "fetch-app", "--url", secretURL("/app.tar.gz"), "--dest", full).fails(t, "not empty")
	noSecrets(t, r)
	if names, _ := filepath.Glob(filepath.Join(full, "*")); len(names) != 1 {
		t.Errorf("a non-empty --dest was changed: %v", names)
	}
	cli(t, nil, "", "fetch-app", "--dest", filepath.Join(base, "x")).fails(t, "--help")
}
