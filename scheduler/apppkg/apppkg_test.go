package apppkg

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hasched/hasched/scheduler/apppkg/apppkgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitLimit bounds every wait of these tests.
const waitLimit = 15 * time.Second

// tarEntry is one entry of a test archive.
type tarEntry = apppkgtest.Entry

func makeTarGz(t *testing.T, entries []tarEntry) []byte { return apppkgtest.TarGz(t, entries...) }

func makeZip(t *testing.T, files map[string]string) []byte { return apppkgtest.Zip(t, files) }

func writeFile(t *testing.T, path string, b []byte) string {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func sha256Of(b []byte) string {
	sum := sha256.Sum256(b)
	return ChecksumPrefix + hex.EncodeToString(sum[:])
}

// appTarball is an app with a script, a file and a symlink.
func appTarball(t *testing.T) []byte {
	return makeTarGz(t, []tarEntry{
		{Name: "bin/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "bin/start.sh", Mode: 0o755, Body: "#!/bin/sh\ncat conf/greeting\n"},
		{Name: "conf/greeting", Body: "hello from the app\n"},
		{Name: "conf/link", Type: tar.TypeSymlink, Link: "greeting"},
		{Name: "./", Type: tar.TypeDir, Mode: 0o755},
	})
}

// serve serves files by path; a path not in files is 404. Chunked paths
// are sent without a Content-Length.
func serve(t *testing.T, files map[string][]byte, chunked ...string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		for _, c := range chunked {
			if c == r.URL.Path {
				// Flushed before the body: no Content-Length.
				w.WriteHeader(http.StatusOK)
				w.(http.Flusher).Flush()
				_, _ = w.Write(b)
				return
			}
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func newFetcher(t *testing.T, maxBytes int64) (*Fetcher, string) {
	t.Helper()
	tmp := t.TempDir()
	f, err := New(Config{TempDir: tmp, MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	return f, tmp
}

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := ParseURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// leftIn fails the test if dir holds anything but keep.
func leftIn(t *testing.T, dir string, keep string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if filepath.Join(dir, e.Name()) != keep {
			t.Errorf("left in TempDir: %s", e.Name())
		}
	}
}

// A package over HTTP is unpacked as it was packed, if its checksum is the
// expected one or none is expected; one whose checksum differs is
// ErrChecksum, and nothing of it is left.
func TestFetchChecksMatchingAndMismatchingChecksums(t *testing.T) {
	pkg := appTarball(t)
	srv := serve(t, map[string][]byte{"/app.tar.gz": pkg})
	for _, sum := range []string{"", sha256Of(pkg)} {
		f, tmp := newFetcher(t, 0)
		dir, err := f.Fetch(t.Context(), mustParse(t, srv.URL+"/app.tar.gz"), sum)
		if err != nil {
			t.Fatalf("checksum %q: %v", sum, err)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "conf", "link")); string(b) != "hello from the app\n" {
			t.Errorf("checksum %q: conf/link reads %q", sum, b)
		}
		if fi, err := os.Stat(filepath.Join(dir, "bin", "start.sh")); err != nil || fi.Mode().Perm()&0o100 == 0 {
			t.Errorf("checksum %q: bin/start.sh %v %v, want executable", sum, fi, err)
		}
		leftIn(t, tmp, dir)
	}

	f, tmp := newFetcher(t, 0)
	other := sha256Of([]byte("another package"))
	_, err := f.Fetch(t.Context(), mustParse(t, srv.URL+"/app.tar.gz"), other)
	if !errors.Is(err, ErrChecksum) || !errors.Is(err, ErrFetch) || !strings.Contains(err.Error(), other) || !strings.Contains(err.Error(), sha256Of(pkg)) {
		t.Errorf("mismatch: %v, want ErrChecksum naming both checksums", err)
	}
	leftIn(t, tmp, "")

	for _, bad := range []string{"sha256:abc", "md5:" + strings.Repeat("0", 32), strings.ToUpper(sha256Of(pkg))} {
		if _, err := f.Fetch(t.Context(), mustParse(t, srv.URL+"/app.tar.gz"), bad); !errors.Is(err, ErrInvalidChecksum) || !errors.Is(err, ErrFetch) {
			t.Errorf("checksum %q: %v, want ErrInvalidChecksum", bad, err)
		}
	}
}

// A zip package is unpacked; an unknown format is one executable file
// named as in the URL.
func TestFetchUnpacksZipAndPlainFiles(t *testing.T) {
	srv := serve(t, map[string][]byte{
		"/app.zip":       makeZip(t, map[string]string{"dir/hello.txt": "zip content"}),
		"/no-suffix":     makeZip(t, map[string]string{"sniffed.txt": "by its first bytes"}),
		"/tools/run.sh":  []byte("echo hi\n"),
		"/app.tgz":       appTarball(t),
		"/sniffed-targz": appTarball(t),
	})
	f, _ := newFetcher(t, 0)
	for path, want := range map[string]string{
		"/app.zip":       "dir/hello.txt",
		"/no-suffix":     "sniffed.txt",
		"/tools/run.sh":  "run.sh",
		"/app.tgz":       "conf/greeting",
		"/sniffed-targz": "conf/greeting",
	} {
		dir, err := f.Fetch(t.Context(), mustParse(t, srv.URL+path), "")
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if _, err := os.Stat(filepath.Join(dir, want)); err != nil {
			t.Errorf("%s: %s not unpacked: %v", path, want, err)
		}
	}
}

// A package larger than MaxBytes is ErrPackageTooLarge, whether its
// server says its length or not, from a file too; so is one that unpacks
// to more than UnpackFactor times MaxBytes.
func TestFetchBoundsThePackageAndItsTree(t *testing.T) {
	pkg := appTarball(t)
	bomb := makeTarGz(t, []tarEntry{{Name: "zeros", Body: strings.Repeat("\x00", 64<<10)}})
	srv := serve(t, map[string][]byte{"/app.tar.gz": pkg, "/chunked.tar.gz": pkg, "/bomb.tar.gz": bomb}, "/chunked.tar.gz")
	file := writeFile(t, filepath.Join(t.TempDir(), "app.tar.gz"), pkg)

	small, tmp := newFetcher(t, 64)
	for _, raw := range []string{srv.URL + "/app.tar.gz", srv.URL + "/chunked.tar.gz", "file://" + file} {
		if _, err := small.Fetch(t.Context(), mustParse(t, raw), ""); !errors.Is(err, ErrPackageTooLarge) || !errors.Is(err, ErrFetch) {
			t.Errorf("%s: %v, want ErrPackageTooLarge", raw, err)
		}
	}
	leftIn(t, tmp, "")

	if int64(len(bomb)) > 4<<10 {
		t.Fatalf("the bomb is %d bytes compressed; the test wants it under 4 KiB", len(bomb))
	}
	f, tmp := newFetcher(t, 4<<10) // 16 KiB unpacked at most
	if _, err := f.Fetch(t.Context(), mustParse(t, srv.URL+"/bomb.tar.gz"), ""); !errors.Is(err, ErrPackageTooLarge) || !strings.Contains(err.Error(), "unpacks to more than") {
		t.Errorf("bomb: %v, want ErrPackageTooLarge for the unpacked tree", err)
	}
	leftIn(t, tmp, "")
}

// An archive entry that would land outside the directory fails the fetch
// and is not written; nothing is left in TempDir.
func TestFetchRefusesTraversal(t *testing.T) {
	base := t.TempDir()
	victim := filepath.Join(base, "escaped")
	srv := serve(t, map[string][]byte{
		"/evil.tar.gz": makeTarGz(t, []tarEntry{
			{Name: "ok.txt", Body: "fine"},
			{Name: "../../../../../../../.." + victim, Body: "pwned"},
		}),
		"/evil.zip": makeZip(t, map[string]string{"../escaped": "pwned"}),
	})
	for _, p := range []string{"/evil.tar.gz", "/evil.zip"} {
		f, tmp := newFetcher(t, 0)
		_, err := f.Fetch(t.Context(), mustParse(t, srv.URL+p), "")
		if !errors.Is(err, ErrUnsafeArchive) || !errors.Is(err, ErrFetch) || !strings.Contains(err.Error(), "parent directory reference") {
			t.Errorf("%s: %v, want ErrUnsafeArchive", p, err)
		}
		leftIn(t, tmp, "")
	}
	if _, err := os.Stat(victim); !os.IsNotExist(err) {
		t.Errorf("archive wrote outside its directory: %v", err)
	}
}

func TestUnpackRefusesUnsafeEntries(t *testing.T) {
	cases := map[string][]tarEntry{
		"absolute":          {{Name: "/etc/evil", Body: "x"}},
		"dotdot":            {{Name: "a/../../evil", Body: "x"}},
		"absolute symlink":  {{Name: "l", Type: tar.TypeSymlink, Link: "/etc"}},
		"escaping symlink":  {{Name: "a/l", Type: tar.TypeSymlink, Link: "../../x"}},
		"escaping hardlink": {{Name: "h", Type: tar.TypeLink, Link: "../x"}},
		// Each link alone stays inside; through the first, the second
		// leads out.
		"symlink chain": {
			{Name: "a/b/up", Type: tar.TypeSymlink, Link: "../.."},
			{Name: "a/b/up/out", Type: tar.TypeSymlink, Link: "../.."},
		},
		// A file written through a symlinked directory that leads out.
		"write through symlink": {
			{Name: "a/b/up", Type: tar.TypeSymlink, Link: "../.."},
			{Name: "a/b/up/x/y", Type: tar.TypeSymlink, Link: "../../.."},
			{Name: "a/b/up/x/y/evil", Body: "x"},
		},
	}
	for name, entries := range cases {
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			src := writeFile(t, filepath.Join(base, "p.tar.gz"), makeTarGz(t, entries))
			dest := filepath.Join(base, "sub", "dest")
			if err := os.MkdirAll(dest, 0o755); err != nil {
				t.Fatal(err)
			}
			err := unpack(context.Background(), src, "p.tar.gz", dest, DefaultMaxBytes)
			if err == nil {
				t.Fatalf("unpacked")
			}
			if _, serr := os.Stat(filepath.Join(base, "evil")); serr == nil {
				t.Errorf("wrote outside")
			}
			t.Logf("refused: %v", err)
		})
	}
}

// Redirects are followed on the URL's host only; a missing package is its
// HTTP status.
func TestFetchRedirectsAndMissingPackages(t *testing.T) {
	pkg := appTarball(t)
	other := serve(t, map[string][]byte{"/app.tar.gz": pkg})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/app.tar.gz":
			_, _ = w.Write(pkg)
		case "/moved.tar.gz":
			http.Redirect(w, r, "/app.tar.gz", http.StatusFound)
		case "/elsewhere.tar.gz":
			http.Redirect(w, r, other.URL+"/app.tar.gz?sig=redirect-secret", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	f, _ := newFetcher(t, 0)
	if _, err := f.Fetch(t.Context(), mustParse(t, srv.URL+"/moved.tar.gz"), ""); err != nil {
		t.Errorf("redirect on the same host: %v", err)
	}
	_, err := f.Fetch(t.Context(), mustParse(t, srv.URL+"/elsewhere.tar.gz"), "")
	if err == nil || !strings.Contains(err.Error(), "redirect") || strings.Contains(err.Error(), "redirect-secret") {
		t.Errorf("redirect to another host: %v, want refused, without the redirect's query", err)
	}
	if _, err := f.Fetch(t.Context(), mustParse(t, srv.URL+"/nope.tar.gz"), ""); !errors.Is(err, ErrFetch) || !strings.Contains(err.Error(), "404") {
		t.Errorf("404: %v", err)
	}
}

// No error holds the URL's userinfo or query, whatever failed: parsing,
// the connection, the HTTP status, the checksum.
func TestErrorsHoldNoSecretsOfTheURL(t *testing.T) {
	srv := serve(t, map[string][]byte{"/app.tar.gz": appTarball(t)})
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	f, _ := newFetcher(t, 0)
	var errs []error
	for _, raw := range []string{
		"http://tok-user:tok-pass@" + host + "/nope.tar.gz?X-Sig=tok-sig",
		"http://tok-user@" + host + "/app.tar.gz?token=tok-sig",
		strings.Replace(closedURL, "http://", "http://tok-user:tok-pass@", 1) + "/app.tar.gz?token=tok-sig",
	} {
		_, err := f.Fetch(t.Context(), mustParse(t, raw), sha256Of([]byte("x")))
		errs = append(errs, err)
	}
	_, err := ParseURL("http://tok-user:tok-pass@ho st/x?token=tok-sig")
	errs = append(errs, err)
	_, err = ParseURL("ftp://tok-user:tok-pass@host/x?token=tok-sig")
	errs = append(errs, err)
	for _, err := range errs {
		if err == nil {
			t.Fatal("no error")
		}
		if strings.Contains(err.Error(), "tok-") {
			t.Errorf("error %q holds a secret of the URL", err)
		}
		t.Logf("%v", err)
	}
	u, _ := url.Parse("https://u:p@h.example/a/b.tar.gz?s=1#f")
	if got := Redact(u); got != "https://xxxxx@h.example/a/b.tar.gz?xxxxx" {
		t.Errorf("Redact = %q", got)
	}
}

func TestParseURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://h/x.tar.gz":          true,
		"http://h:8080/x":             true,
		"file:///abs/x.zip":           true,
		"file://localhost/abs/x.zip":  true,
		"file://otherhost/abs/x.zip":  false,
		"file:relative/x.zip":         false,
		"ftp://h/x":                   false,
		"https:///no-host":            false,
		"/just/a/path":                false,
		"http://%zz":                  false,
		"s3://bucket/key?versionId=1": false,
	} {
		_, err := ParseURL(raw)
		if (err == nil) != ok {
			t.Errorf("ParseURL(%q): %v, want ok=%v", raw, err, ok)
		}
		if err != nil && (!errors.Is(err, ErrInvalidURL) || !errors.Is(err, ErrFetch)) {
			t.Errorf("ParseURL(%q): %v, want ErrInvalidURL", raw, err)
		}
	}
}

// A file:// URL naming a FIFO or a device fails at once: the open does not
// block, and nothing endless is read.
func TestFileURLMustBeARegularFile(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "app.fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	f, _ := newFetcher(t, 0)
	for path, kind := range map[string]string{fifo: "named pipe", "/dev/zero": "character device"} {
		u := mustParse(t, "file://"+path)
		done := make(chan error, 1)
		go func() {
			_, err := f.Fetch(context.Background(), u, "")
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, ErrNotRegularFile) || !strings.Contains(err.Error(), kind) {
				t.Errorf("%s: %v, want ErrNotRegularFile (%s)", path, err, kind)
			}
		case <-time.After(waitLimit):
			if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
				w.Close()
			}
			<-done
			t.Fatalf("%s: the fetch blocked", path)
		}
	}
}

func TestConfigIsValidated(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no TempDir":     {MaxBytes: 1},
		"negative bytes": {TempDir: "/tmp", MaxBytes: -1},
		"too many bytes": {TempDir: "/tmp", MaxBytes: MaxMaxBytes + 1},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
	f, err := New(Config{TempDir: "/tmp"})
	if err != nil || f.MaxBytes() != DefaultMaxBytes {
		t.Errorf("defaults: %v, MaxBytes %d", err, f.MaxBytes())
	}
}

// endless reads for ever, like /dev/zero.
type endless struct{}

func (endless) Read(p []byte) (int, error) { return len(p), nil }

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// Copies stop when their context ends, whatever they read.
func TestCopyIsCancellable(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var sink countingWriter
	go func() {
		_, err := CopyLimited(ctx, &sink, endless{}, 1<<62)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("copy ended with %v, want context.Canceled", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("copy ignores cancellation")
	}
}
