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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/scheduler/executor"
)

// Bounds on one app package that are not configurable: they only refuse
// what no app needs. The package's size is Config.MaxAppBytes, its unpacked
// tree at most unpackFactor times that.
const (
	unpackFactor     = 4
	maxArchiveFiles  = 100_000
	maxRedirects     = 10
	maxSymlinkTarget = 4096
)

// Files of a cache entry, WorkDir/apps/<app>/<key>/.
const (
	// cacheTree is the unpacked app, never a task's working directory.
	cacheTree = "tree"
	// cacheDigest is treeDigest of cacheTree when it was fetched; its
	// modification time is the fetch's (AppCacheMaxAge counts from it).
	// The entry directory's own modification time is its last use.
	cacheDigest = "digest"
	// cacheSize is the tree's size in bytes, so that the janitor need not
	// walk every entry to keep the cache within AppCacheMaxBytes.
	cacheSize = "size"
)

// preparedApp is a task's own copy of its app, waiting in tmp/ to be moved
// into its task dir (and removed with it).
type preparedApp struct {
	dir string
}

// discard removes a copy that was never moved into place.
func (a *preparedApp) discard() {
	if a.dir != "" {
		_ = os.RemoveAll(a.dir)
	}
}

func newHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	return &http.Client{Transport: tr}
}

// fetchApp makes the task's own copy of its app package within
// FetchTimeout.
//
// FetchTimeout is the executor's own bound on the fetch (the contract
// leaves Launch's deadlines to the executor): it holds however long ctx
// lives, and a fetch it cuts off fails the task with ErrFetchTimeout. ctx
// only says whether the caller still wants the launch; when it ends, the
// fetch stops and the caller learns that from ctx, not from the error.
// Nothing here is shared between fetches but the cache directory, whose
// entries appear and go by rename only, so a slow package (or one that
// never ends: every copy reads through ctxReader) holds up no other task's
// launch.
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

// fetchOrCache makes the task's own copy of its app package.
//
// Every task runs in a copy of its own, also when the app is cached. A task
// that ran in the shared cache entry could rewrite it (one rewrote
// bin/start.sh, and the next job ran that); hard links would not help, as a
// task writes through them into the shared inode; a read-only cache does
// not stop a task running as the same user, which can chmod it back. So
// the cache entry is never any task's directory and is copied for each
// task, which costs one read and write of the app per launch (bounded by
// MaxAppBytes), and the copy hashes what it reads: an entry whose tree no
// longer matches the digest recorded when it was fetched is evicted and
// fetched again, so a tampered entry is never run, even by a task that
// found the cache through its own task directory.
//
// With AppCacheEnable the entry WorkDir/apps/<app>/<key> (key: URL and
// checksum) is fetched once and shared by every task and process of this
// WorkDir; entries older than AppCacheMaxAge are fetched again, and the
// janitor keeps the cache within AppCacheMaxBytes. Without it the package is
// fetched (and checked against its checksum) for every task, and the cache
// is neither read nor written.
func (e *Executor) fetchOrCache(ctx context.Context, t executor.Task) (preparedApp, error) {
	u, err := parseAppURL(t.AppURL)
	if err != nil {
		return preparedApp{}, fmt.Errorf("%w: %v", ErrFetch, err)
	}
	log := e.log.With("task_id", t.ID, "app", t.App, "url", u.Redacted())
	if !t.AppCacheEnable {
		dir, err := e.fetchInto(ctx, u, t.AppChecksum)
		if err != nil {
			log.Warn("app fetch failed", "error", err)
			return preparedApp{}, err
		}
		return preparedApp{dir: dir}, nil
	}
	entry := e.cacheEntry(t)
	if dir, ok := e.fromCache(ctx, entry, log); ok {
		return preparedApp{dir: dir}, nil
	}
	if err := ctx.Err(); err != nil {
		return preparedApp{}, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	tree, err := e.fetchInto(ctx, u, t.AppChecksum)
	if err != nil {
		log.Warn("app fetch failed", "error", err)
		return preparedApp{}, err
	}
	// The task's copy and the entry's digest, both from the tree as
	// unpacked; the tree itself becomes the entry.
	dir, digest, size, err := e.copyTree(ctx, tree)
	if err != nil {
		_ = os.RemoveAll(tree)
		return preparedApp{}, fmt.Errorf("%w: copy app: %w", ErrFetch, err)
	}
	e.install(entry, tree, digest, size, log)
	return preparedApp{dir: dir}, nil
}

// cacheEntry is where the cache keeps the task's app: by URL and checksum,
// so that a new checksum is a new entry.
func (e *Executor) cacheEntry(t executor.Task) string {
	sum := sha256.Sum256([]byte(t.AppURL + "\x00" + t.AppChecksum))
	return filepath.Join(e.cfg.appsDir(), escapeName(t.App), hex.EncodeToString(sum[:16]))
}

// fromCache copies a cache entry for a task, verifying it on the way; ok is
// false on a miss (none, too old, changed, unreadable), which evicts what
// was there.
func (e *Executor) fromCache(ctx context.Context, entry string, log hclog.Logger) (dir string, ok bool) {
	want, err := os.ReadFile(filepath.Join(entry, cacheDigest))
	if notExist(err) {
		if _, serr := os.Stat(entry); serr == nil {
			e.evictEntry(entry, "no digest") // left by an older executor
		}
		return "", false
	}
	if err != nil {
		log.Warn("app cache entry unreadable", "entry", entry, "error", err)
		e.evictEntry(entry, "unreadable")
		return "", false
	}
	if fi, err := os.Stat(filepath.Join(entry, cacheDigest)); err != nil || time.Since(fi.ModTime()) > e.cfg.AppCacheMaxAge {
		e.evictEntry(entry, "older than AppCacheMaxAge")
		return "", false
	}
	dir, got, _, err := e.copyTree(ctx, filepath.Join(entry, cacheTree))
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("app cache entry cannot be copied; fetching again", "entry", entry, "error", err)
			e.evictEntry(entry, "cannot be copied")
		}
		return "", false
	}
	if got != string(want) {
		_ = os.RemoveAll(dir)
		log.Warn("app cache entry changed since it was fetched; fetching again", "entry", entry)
		e.evictEntry(entry, "changed since it was fetched")
		return "", false
	}
	now := time.Now()
	_ = os.Chtimes(entry, now, now) // its last use, for eviction by size
	return dir, true
}

// install makes tree the cache entry: built in tmp/ and renamed into place
// whole, so that an entry that exists is complete. Failing to cache is no
// failure of the task, which has its copy.
func (e *Executor) install(entry, tree, digest string, size int64, log hclog.Logger) {
	stage, err := os.MkdirTemp(e.cfg.tmpDir(), "entry-")
	if err != nil {
		_ = os.RemoveAll(tree)
		log.Warn("cannot cache app", "error", err)
		return
	}
	defer func() { _ = os.RemoveAll(stage) }() // a no-op once renamed
	if err := os.Rename(tree, filepath.Join(stage, cacheTree)); err != nil {
		_ = os.RemoveAll(tree)
		log.Warn("cannot cache app", "error", err)
		return
	}
	if err := os.WriteFile(filepath.Join(stage, cacheSize), []byte(strconv.FormatInt(size, 10)), 0o640); err != nil {
		log.Warn("cannot cache app", "error", err)
		return
	}
	// The digest last: its time is the fetch's.
	if err := os.WriteFile(filepath.Join(stage, cacheDigest), []byte(digest), 0o640); err != nil {
		log.Warn("cannot cache app", "error", err)
		return
	}
	if err := os.MkdirAll(filepath.Dir(entry), 0o750); err != nil {
		log.Warn("cannot cache app", "error", err)
		return
	}
	if err := os.Rename(stage, entry); err != nil {
		// Another process cached it first: keep theirs.
		log.Debug("app cached meanwhile by another launch", "entry", entry)
		return
	}
	log.Info("app fetched into cache", "entry", entry)
	e.evictCache()
}

// evictEntry removes a cache entry: renamed into tmp/ first, so that no
// launch ever copies half of it.
func (e *Executor) evictEntry(entry, why string) {
	trash := filepath.Join(e.cfg.tmpDir(), tempName("evicted-app"))
	if err := os.Rename(entry, trash); err != nil {
		if !notExist(err) {
			e.log.Warn("cannot evict app cache entry", "entry", entry, "error", err)
		}
		return
	}
	_ = os.RemoveAll(trash)
	e.log.Info("app cache entry evicted", "entry", entry, "reason", why)
}

// cached is one cache entry as evictCache sees it.
type cached struct {
	dir     string
	size    int64
	lastUse time.Time
}

// evictCache removes entries fetched longer than AppCacheMaxAge ago, then
// the least recently used ones until the cache holds at most
// AppCacheMaxBytes. An entry in use by a launch that copies it is removed
// all the same: that copy fails and the launch fetches the package anew.
func (e *Executor) evictCache() {
	apps, err := os.ReadDir(e.cfg.appsDir())
	if err != nil {
		return
	}
	var entries []cached
	var total int64
	for _, app := range apps {
		dirs, err := os.ReadDir(filepath.Join(e.cfg.appsDir(), app.Name()))
		if err != nil {
			continue
		}
		for _, d := range dirs {
			if len(entries) >= maxCacheEntries {
				break
			}
			entry := filepath.Join(e.cfg.appsDir(), app.Name(), d.Name())
			fi, err := os.Stat(filepath.Join(entry, cacheDigest))
			if err != nil {
				e.evictEntry(entry, "no digest")
				continue
			}
			if time.Since(fi.ModTime()) > e.cfg.AppCacheMaxAge {
				e.evictEntry(entry, "older than AppCacheMaxAge")
				continue
			}
			c := cached{dir: entry, size: entrySize(entry)}
			if di, err := os.Stat(entry); err == nil {
				c.lastUse = di.ModTime()
			}
			entries = append(entries, c)
			total += c.size
		}
	}
	if total <= e.cfg.AppCacheMaxBytes {
		return
	}
	slices.SortFunc(entries, func(a, b cached) int { return a.lastUse.Compare(b.lastUse) })
	for _, c := range entries {
		if total <= e.cfg.AppCacheMaxBytes {
			return
		}
		e.evictEntry(c.dir, "app cache larger than AppCacheMaxBytes")
		total -= c.size
	}
}

// entrySize is the size of a cache entry: as recorded, else walked.
func entrySize(entry string) int64 {
	if b, err := os.ReadFile(filepath.Join(entry, cacheSize)); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n >= 0 {
			return n
		}
	}
	return treeSize(entry)
}

// treeSize is the size of the files below dir.
func treeSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// copyTree copies the app tree src into a new directory in tmp/ and returns
// treeDigest of what it copied: every directory, file (its mode and
// contents) and symlink (its target), in lexical order, so that the copy is
// exactly what was hashed. It follows no symlink and opens nothing but
// regular files (without blocking: a FIFO planted in the cache must not
// hang the launch).
func (e *Executor) copyTree(ctx context.Context, src string) (dst, digest string, size int64, err error) {
	dst, err = os.MkdirTemp(e.cfg.tmpDir(), "app-")
	if err != nil {
		return "", "", 0, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dst)
			dst = ""
		}
	}()
	if err := os.Chmod(dst, 0o750); err != nil {
		return "", "", 0, err
	}
	h := sha256.New()
	limit := e.cfg.MaxAppBytes * unpackFactor
	var total int64
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		switch typ := d.Type(); {
		case rel == ".":
			if !d.IsDir() {
				return fmt.Errorf("app tree %s is not a directory", src)
			}
		case d.IsDir():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "d %q %o\n", rel, fi.Mode().Perm())
			return os.Mkdir(to, fi.Mode().Perm()|0o700)
		case typ&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "l %q %q\n", rel, target)
			return os.Symlink(target, to)
		case typ.IsRegular():
			n, err := copyFile(ctx, p, to, rel, h, limit-total)
			total += n
			return err
		default:
			return fmt.Errorf("%q is a %v: an app holds files, directories and symlinks only", rel, typ)
		}
		return nil
	})
	if err != nil {
		return "", "", 0, err
	}
	return dst, hex.EncodeToString(h.Sum(nil)), total, nil
}

// copyFile copies the regular file from to to, hashing its name, mode,
// length and contents into h; at most limit bytes.
func copyFile(ctx context.Context, from, to, rel string, h io.Writer, limit int64) (int64, error) {
	in, err := openRegular(from, syscall.O_NOFOLLOW)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return 0, err
	}
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm()|0o600)
	if err != nil {
		return 0, err
	}
	// The hashed length is what is copied, not the stat's, which a writer
	// could change meanwhile: so the header goes after the contents.
	fh := sha256.New()
	n, err := copyLimited(ctx, io.MultiWriter(out, fh), in, limit)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, err
	}
	fmt.Fprintf(h, "f %q %o %d %x\n", rel, fi.Mode().Perm(), n, fh.Sum(nil))
	return n, nil
}

// openRegular opens a file for reading only if it is a regular file. The
// open does not block (O_NONBLOCK: opening a FIFO without a writer would
// hang the launch, uncancellably), and fstat then refuses FIFOs, devices
// (/dev/zero never ends) and sockets.
func openRegular(path string, flags int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|flags, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %s is a %s", ErrNotRegularFile, path, fileKind(fi.Mode()))
	}
	return f, nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "device"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m.IsDir():
		return "directory"
	}
	return m.Type().String()
}

// ctxReader makes a copy cancellable: every Read first checks ctx, so that
// a copy of a huge or endless source ends within one read of the context's
// end.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// copyLimited copies at most limit bytes of r to w, cancellably; more is
// ErrPackageTooLarge.
func copyLimited(ctx context.Context, w io.Writer, r io.Reader, limit int64) (int64, error) {
	if limit < 0 {
		limit = 0
	}
	n, err := io.Copy(w, ctxReader{ctx: ctx, r: io.LimitReader(r, limit+1)})
	if err != nil {
		return n, err
	}
	if n > limit {
		return n, fmt.Errorf("%w: more than %d bytes", ErrPackageTooLarge, limit)
	}
	return n, nil
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

// fetchInto retrieves a package (at most MaxAppBytes, checked against its
// checksum if it has one) and unpacks it into a new directory in tmp/.
// Every error wraps ErrFetch and names the URL (without its password).
func (e *Executor) fetchInto(ctx context.Context, u *url.URL, checksum string) (dir string, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w %s: %w", ErrFetch, u.Redacted(), err)
		}
	}()
	pkg, err := e.retrieve(ctx, u, checksum)
	if err != nil {
		return "", err
	}
	defer func() { _ = os.Remove(pkg) }()
	tmp, err := os.MkdirTemp(e.cfg.tmpDir(), "app-")
	if err != nil {
		return "", err
	}
	if err := unpack(ctx, pkg, path.Base(u.Path), tmp, e.cfg.MaxAppBytes*unpackFactor); err != nil {
		_ = os.RemoveAll(tmp)
		return "", err
	}
	if err := ctx.Err(); err != nil {
		_ = os.RemoveAll(tmp)
		return "", err
	}
	return tmp, nil
}

// retrieve copies the package into a file in tmp/, whatever its scheme, so
// that it is read once (hashed on the way), bounded, and unpacked from a
// file nobody else writes.
func (e *Executor) retrieve(ctx context.Context, u *url.URL, want string) (file string, err error) {
	f, err := os.CreateTemp(e.cfg.tmpDir(), "download-")
	if err != nil {
		return "", err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	w := io.MultiWriter(f, h)
	if u.Scheme == "file" {
		err = e.copyLocal(ctx, u.Path, w)
	} else {
		err = e.download(ctx, u, w)
	}
	if err != nil {
		return "", err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); want != "" && got != want {
		return "", fmt.Errorf("%w: appChecksum is %s, the package's is %s", ErrChecksum, want, got)
	}
	return f.Name(), nil
}

// copyLocal copies a file:// package: a regular file only, at most
// MaxAppBytes, cancellably.
func (e *Executor) copyLocal(ctx context.Context, name string, w io.Writer) error {
	f, err := openRegular(name, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > e.cfg.MaxAppBytes {
		return fmt.Errorf("%w: %d bytes, MaxAppBytes is %d", ErrPackageTooLarge, fi.Size(), e.cfg.MaxAppBytes)
	}
	_, err = copyLimited(ctx, w, f, e.cfg.MaxAppBytes)
	return err
}

// download GETs u into w. Redirects are followed only to the host the
// user configured, and never from https down to http: the URL in the app's
// configuration is the only place packages come from.
func (e *Executor) download(ctx context.Context, u *url.URL, w io.Writer) error {
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
	if resp.ContentLength > e.cfg.MaxAppBytes {
		return fmt.Errorf("%w: %d bytes, MaxAppBytes is %d", ErrPackageTooLarge, resp.ContentLength, e.cfg.MaxAppBytes)
	}
	_, err = copyLimited(ctx, w, resp.Body, e.cfg.MaxAppBytes)
	return err
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
// unpacked, anything else is copied as an executable file of that name; at
// most limit bytes in all.
func unpack(ctx context.Context, src, name, dir string, limit int64) error {
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
	u := &unpacker{ctx: ctx, root: root, limit: limit}
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
	limit int64
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
	n, err := copyLimited(u.ctx, f, r, u.limit-u.bytes)
	u.bytes += n
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, ErrPackageTooLarge) {
		err = fmt.Errorf("%w: archive unpacks to more than %d bytes", ErrPackageTooLarge, u.limit)
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
