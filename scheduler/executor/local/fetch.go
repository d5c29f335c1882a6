package local

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/hasched/hasched/scheduler/executor"
)

// Bounds on one app package, so that a broken or hostile package cannot
// fill the disk.
const (
	maxDownloadBytes = 2 << 30
	maxUnpackedBytes = 8 << 30
	maxArchiveFiles  = 100_000
	maxRedirects     = 10
	maxSymlinkTarget = 4096
)

// preparedApp is an app package ready for a task: in the shared cache, or a
// task's own copy waiting in tmp/ to be moved into its task dir.
type preparedApp struct {
	dir  string
	temp bool
}

// discard removes a task's own copy that was never moved into place.
func (a *preparedApp) discard() {
	if a.temp && a.dir != "" {
		_ = os.RemoveAll(a.dir)
	}
}

func newHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	return &http.Client{Transport: tr}
}

// fetchApp makes the task's app package available within FetchTimeout.
//
// FetchTimeout is the executor's own bound on the fetch (the contract
// leaves Launch's deadlines to the executor): it holds however long ctx
// lives, and a fetch it cuts off fails the task with ErrFetchTimeout. ctx
// only says whether the caller still wants the launch; when it ends, the
// fetch stops and the caller learns that from ctx, not from the error.
// Nothing here is shared between fetches but the cache directory, so a slow
// package holds up no other task's launch.
func (e *Executor) fetchApp(ctx context.Context, t executor.Task) (preparedApp, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, e.cfg.FetchTimeout, ErrFetchTimeout)
	defer cancel()
	app, err := e.fetchOrCache(ctx, t)
	if err != nil && errors.Is(context.Cause(ctx), ErrFetchTimeout) {
		u, _ := url.Parse(t.AppURL) // parsed fine, or the timer could not have fired first
		return preparedApp{}, fmt.Errorf("%w (FetchTimeout %v): %s", ErrFetchTimeout, e.cfg.FetchTimeout, u.Redacted())
	}
	return app, err
}

// fetchOrCache makes the task's app package available: from the cache
// WorkDir/apps/<app>/<hash of url> when AppCacheEnable is set (fetched
// once, shared by every task and process), else as a fresh copy.
func (e *Executor) fetchOrCache(ctx context.Context, t executor.Task) (preparedApp, error) {
	u, err := parseAppURL(t.AppURL)
	if err != nil {
		return preparedApp{}, fmt.Errorf("%w: %v", ErrFetch, err)
	}
	log := e.log.With("task_id", t.ID, "app", t.App, "url", u.Redacted())
	if !t.AppCacheEnable {
		dir, err := e.fetchInto(ctx, u)
		if err != nil {
			log.Warn("app fetch failed", "error", err)
			return preparedApp{}, err
		}
		return preparedApp{dir: dir, temp: true}, nil
	}
	sum := sha256.Sum256([]byte(t.AppURL))
	final := filepath.Join(e.cfg.appsDir(), escapeName(t.App), hex.EncodeToString(sum[:16]))
	// A cache entry appears by rename only, so one that exists is whole.
	if fi, err := os.Stat(final); err == nil && fi.IsDir() {
		return preparedApp{dir: final}, nil
	}
	dir, err := e.fetchInto(ctx, u)
	if err != nil {
		log.Warn("app fetch failed", "error", err)
		return preparedApp{}, err
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o750); err != nil {
		_ = os.RemoveAll(dir)
		return preparedApp{}, fmt.Errorf("%w: %v", ErrFetch, err)
	}
	if err := os.Rename(dir, final); err != nil {
		_ = os.RemoveAll(dir)
		// Another process filled the cache first: use its copy.
		if fi, serr := os.Stat(final); serr == nil && fi.IsDir() {
			return preparedApp{dir: final}, nil
		}
		return preparedApp{}, fmt.Errorf("%w: %v", ErrFetch, err)
	}
	log.Info("app fetched into cache", "dir", final)
	return preparedApp{dir: final}, nil
}

// parseAppURL accepts file://, http:// and https:// URLs.
func parseAppURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return nil, fmt.Errorf("app URL %s has no host", u.Redacted())
		}
	case "file":
		if u.Opaque != "" || (u.Host != "" && u.Host != "localhost") || !path.IsAbs(u.Path) {
			return nil, fmt.Errorf("app URL %s: want file:///absolute/path", u.Redacted())
		}
	default:
		return nil, fmt.Errorf("app URL %s: scheme %q not supported (file, http, https)", u.Redacted(), u.Scheme)
	}
	return u, nil
}

// fetchInto downloads and unpacks a package into a new directory in tmp/.
// Every error wraps ErrFetch and names the URL (without its password).
func (e *Executor) fetchInto(ctx context.Context, u *url.URL) (dir string, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w %s: %w", ErrFetch, u.Redacted(), err)
		}
	}()
	tmp, err := os.MkdirTemp(e.cfg.tmpDir(), "app-")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()

	src := u.Path
	if u.Scheme != "file" {
		f, err := os.CreateTemp(e.cfg.tmpDir(), "download-")
		if err != nil {
			return "", err
		}
		defer func() {
			f.Close()
			_ = os.Remove(f.Name())
		}()
		if err := e.download(ctx, u, f); err != nil {
			return "", err
		}
		src = f.Name()
	}
	if err := unpack(ctx, src, path.Base(u.Path), tmp); err != nil {
		return "", err
	}
	return tmp, ctx.Err()
}

// download GETs u into f. Redirects are followed only to the host the
// user configured, and never from https down to http: the URL in the app's
// configuration is the only place packages come from.
func (e *Executor) download(ctx context.Context, u *url.URL, f *os.File) error {
	client := *e.http
	client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxRedirects {
			return fmt.Errorf("more than %d redirects", maxRedirects)
		}
		if req.URL.Host != u.Host || (u.Scheme == "https" && req.URL.Scheme != "https") {
			return fmt.Errorf("redirect to %s refused: packages are fetched from %s://%s only",
				req.URL.Redacted(), u.Scheme, u.Host)
		}
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	n, err := io.Copy(f, io.LimitReader(resp.Body, maxDownloadBytes+1))
	if err != nil {
		return err
	}
	if n > maxDownloadBytes {
		return fmt.Errorf("package larger than %d bytes", int64(maxDownloadBytes))
	}
	return nil
}

type archiveKind int

const (
	kindPlain archiveKind = iota
	kindTarGz
	kindTar
	kindZip
)

// kindOf tells the package's format by its name, else by its first bytes.
func kindOf(name string, head []byte) archiveKind {
	n := strings.ToLower(name)
	switch {
	case strings.HasSuffix(n, ".tar.gz"), strings.HasSuffix(n, ".tgz"):
		return kindTarGz
	case strings.HasSuffix(n, ".tar"):
		return kindTar
	case strings.HasSuffix(n, ".zip"):
		return kindZip
	case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b:
		return kindTarGz
	case len(head) >= 4 && string(head[:4]) == "PK\x03\x04":
		return kindZip
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return kindTar
	}
	return kindPlain
}

// unpack puts package src (named name in its URL) into dir: archives are
// unpacked, anything else is copied as an executable file of that name.
func unpack(ctx context.Context, src, name, dir string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	head, _ := br.Peek(512)
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	u := &unpacker{ctx: ctx, root: root}
	switch kindOf(name, head) {
	case kindTarGz:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return err
		}
		defer zr.Close()
		err = u.tar(zr)
		if err != nil {
			return err
		}
	case kindTar:
		if err := u.tar(br); err != nil {
			return err
		}
	case kindZip:
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if err := u.zip(f, fi.Size()); err != nil {
			return err
		}
	default:
		if name == "" || name == "." || name == "/" || name == ".." {
			name = "app"
		}
		if err := u.file(name, br, 0o755); err != nil {
			return err
		}
	}
	return u.checkSymlinks(dir)
}

// unpacker writes archive entries below root. Entry names are checked
// (relative, no ".."), symlink targets too, and every write goes through
// os.Root, which refuses to leave the directory even through a symlink.
type unpacker struct {
	ctx   context.Context
	root  *os.Root
	files int
	bytes int64
}

// entryName checks and cleans an archive entry's name; skip is set for
// the archive's root itself ("./").
func entryName(raw string) (name string, skip bool, err error) {
	if raw == "" || strings.IndexByte(raw, 0) >= 0 {
		return "", false, fmt.Errorf("%w %q: empty or NUL in name", ErrUnsafeArchive, raw)
	}
	if strings.HasPrefix(raw, "/") {
		return "", false, fmt.Errorf("%w %q: absolute path", ErrUnsafeArchive, raw)
	}
	for _, seg := range strings.Split(raw, "/") {
		if seg == ".." {
			return "", false, fmt.Errorf("%w %q: parent directory reference", ErrUnsafeArchive, raw)
		}
	}
	name = path.Clean(raw)
	return name, name == ".", nil
}

// count applies the archive limits and checks for cancellation.
func (u *unpacker) count() error {
	u.files++
	if u.files > maxArchiveFiles {
		return fmt.Errorf("archive has more than %d entries", maxArchiveFiles)
	}
	return u.ctx.Err()
}

func (u *unpacker) tar(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := u.count(); err != nil {
			return err
		}
		name, skip, err := entryName(hdr.Name)
		if err != nil {
			return err
		}
		if skip {
			continue
		}
		mode := fs.FileMode(hdr.Mode).Perm()
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = u.dir(name, mode)
		case tar.TypeReg:
			err = u.file(name, tr, mode)
		case tar.TypeSymlink:
			err = u.symlink(name, hdr.Linkname)
		case tar.TypeLink:
			err = u.hardlink(name, hdr.Linkname)
		default:
			// Devices, FIFOs and the like have no place in an app.
			continue
		}
		if err != nil {
			return entryError(name, err)
		}
	}
}

func (u *unpacker) zip(r io.ReaderAt, size int64) error {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return err
	}
	for _, zf := range zr.File {
		if err := u.count(); err != nil {
			return err
		}
		name, skip, err := entryName(zf.Name)
		if err != nil {
			return err
		}
		if skip {
			continue
		}
		mode := zf.Mode()
		switch {
		case mode.IsDir():
			err = u.dir(name, mode.Perm())
		case mode&fs.ModeSymlink != 0:
			var target []byte
			if target, err = readZipEntry(zf, maxSymlinkTarget); err == nil {
				err = u.symlink(name, string(target))
			}
		case mode.IsRegular():
			var rc io.ReadCloser
			if rc, err = zf.Open(); err == nil {
				err = u.file(name, rc, mode.Perm())
				rc.Close()
			}
		}
		if err != nil {
			return entryError(name, err)
		}
	}
	return nil
}

// entryError names the entry in errors that do not name it already.
func entryError(name string, err error) error {
	if errors.Is(err, ErrUnsafeArchive) {
		return err
	}
	return fmt.Errorf("entry %q: %w", name, err)
}

func readZipEntry(zf *zip.File, limit int64) ([]byte, error) {
	rc, err := zf.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = fmt.Errorf("%w %q: symlink target too long", ErrUnsafeArchive, zf.Name)
	}
	return b, err
}

func (u *unpacker) dir(name string, mode fs.FileMode) error {
	return u.root.MkdirAll(name, mode|0o700)
}

// clear makes room for an entry: a later entry of the same name replaces an
// earlier one (as tar does), and is never written through an old symlink.
func (u *unpacker) clear(name string) error {
	if d := path.Dir(name); d != "." {
		if err := u.root.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	fi, err := u.root.Lstat(name)
	switch {
	case notExist(err):
		return nil
	case err != nil:
		return err
	case fi.IsDir():
		return fmt.Errorf("%q is a directory and a file", name)
	}
	return u.root.Remove(name)
}

func (u *unpacker) file(name string, r io.Reader, mode fs.FileMode) error {
	if err := u.clear(name); err != nil {
		return err
	}
	f, err := u.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode|0o600)
	if err != nil {
		return err
	}
	left := maxUnpackedBytes - u.bytes
	n, err := io.Copy(f, io.LimitReader(r, left+1))
	u.bytes += n
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && u.bytes > maxUnpackedBytes {
		err = fmt.Errorf("archive unpacks to more than %d bytes", int64(maxUnpackedBytes))
	}
	return err
}

// symlink creates a symlink whose target stays inside the directory as
// written; checkSymlinks then checks where the links really lead.
func (u *unpacker) symlink(name, target string) error {
	if target == "" || strings.IndexByte(target, 0) >= 0 {
		return fmt.Errorf("%w %q: empty symlink target", ErrUnsafeArchive, name)
	}
	if strings.HasPrefix(target, "/") {
		return fmt.Errorf("%w %q: symlink to absolute path %q", ErrUnsafeArchive, name, target)
	}
	if t := path.Join(path.Dir(name), target); t == ".." || strings.HasPrefix(t, "../") {
		return fmt.Errorf("%w %q: symlink %q leads out of the app directory", ErrUnsafeArchive, name, target)
	}
	if err := u.clear(name); err != nil {
		return err
	}
	return u.root.Symlink(target, name)
}

// hardlink links name to another entry of the archive (tar names link
// targets from the archive's root).
func (u *unpacker) hardlink(name, target string) error {
	t, skip, err := entryName(target)
	if err != nil {
		return err
	}
	if skip {
		return fmt.Errorf("%w %q: hard link to the directory", ErrUnsafeArchive, name)
	}
	if err := u.clear(name); err != nil {
		return err
	}
	return u.root.Link(t, name)
}

// checkSymlinks resolves every symlink of the unpacked tree inside the
// root. Each was checked on its own as written, but chains (a link through
// a linked directory) can still lead out; os.Root's resolution catches
// those. A dangling link is no danger and is left alone.
func (u *unpacker) checkSymlinks(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if _, err := u.root.Stat(rel); err != nil && !notExist(err) {
			return fmt.Errorf("%w %q: %v", ErrUnsafeArchive, rel, err)
		}
		return nil
	})
}
