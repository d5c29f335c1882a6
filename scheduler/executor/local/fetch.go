package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/scheduler/apppkg"
	"github.com/hasched/hasched/scheduler/executor"
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
		return preparedApp{}, fmt.Errorf("%w (FetchTimeout %v): %s", ErrFetchTimeout, e.cfg.FetchTimeout, apppkg.Redact(u))
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
	u, err := apppkg.ParseURL(t.AppURL)
	if err != nil {
		return preparedApp{}, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	log := e.log.With("task_id", t.ID, "app", t.App, "url", apppkg.Redact(u))
	if !t.AppCacheEnable {
		dir, err := e.fetcher.Fetch(ctx, u, t.AppChecksum)
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
	tree, err := e.fetcher.Fetch(ctx, u, t.AppChecksum)
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
	limit := e.cfg.MaxAppBytes * apppkg.UnpackFactor
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
	in, err := apppkg.OpenRegular(from, syscall.O_NOFOLLOW)
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
	n, err := apppkg.CopyLimited(ctx, io.MultiWriter(out, fh), in, limit)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, err
	}
	fmt.Fprintf(h, "f %q %o %d %x\n", rel, fi.Mode().Perm(), n, fh.Sum(nil))
	return n, nil
}
