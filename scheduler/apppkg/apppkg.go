// Package apppkg fetches an app package (model.App's appURL) and unpacks it
// into a directory: the part of running a task from a package that does not
// depend on where the task runs. The local executor fetches into its work
// directory (and keeps its own cache around this package); on Kubernetes an
// init container runs `hasched fetch-app`, which is this package, into the
// Pod's task directory.
//
// # What a package may be
//
// A package comes from a file://, http:// or https:// URL. It is read once,
// at most Config.MaxBytes of it, into a file in Config.TempDir, hashed on
// the way and compared with the app's appChecksum ("sha256:<hex>") if it has
// one; then unpacked: tar, tar.gz and zip archives (by the URL's name, else
// by their first bytes) into a new directory, anything else copied as one
// executable file named as in the URL. The unpacked tree is bounded too
// (UnpackFactor times MaxBytes, maxArchiveFiles entries). No entry lands
// outside the directory: names with "..", absolute names and symlinks that
// lead out are refused (ErrUnsafeArchive), and every write goes through an
// os.Root. HTTP redirects are followed only to the URL's own host, never
// from https to http. A file:// package must be a regular file: a FIFO or
// /dev/zero would hang or never end the fetch.
//
// # Secrets in the URL
//
// An app URL may carry a credential: a password or token as its userinfo,
// a signature in its query (a presigned URL). Nothing this package returns
// or logs holds more of the URL than Redact leaves of it: scheme, host and
// path. Where the URL itself travels is the caller's business: on
// Kubernetes it is in the Pod's spec (an environment variable of the init
// container, so that it is not on a command line), and whoever may read
// the namespace's Pods may read it.
package apppkg

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
)

// Errors, for errors.Is. Every error of Fetch is an ErrFetch.
var (
	// ErrInvalidConfig wraps every Config validation failure.
	ErrInvalidConfig = errors.New("apppkg: invalid config")
	// ErrFetch wraps every failure to fetch or unpack a package.
	ErrFetch = errors.New("fetch app package")
	// ErrInvalidURL is an ErrFetch: a URL that cannot be fetched from
	// (not file, http or https; no host; not absolute).
	ErrInvalidURL error = &fetchError{"invalid app URL"}
	// ErrChecksum is an ErrFetch: a package whose SHA-256 is not the
	// expected one. Nothing of it is unpacked.
	ErrChecksum error = &fetchError{"checksum mismatch"}
	// ErrInvalidChecksum is an ErrFetch: an expected checksum that is not
	// "sha256:" and 64 lower-case hex digits; nothing is fetched.
	ErrInvalidChecksum error = &fetchError{"invalid checksum"}
	// ErrNotRegularFile is an ErrFetch: a file:// package that is not a
	// regular file (a FIFO would block the fetch, /dev/zero never ends).
	ErrNotRegularFile error = &fetchError{"not a regular file"}
	// ErrPackageTooLarge is an ErrFetch: a package larger than MaxBytes,
	// or unpacking to more than UnpackFactor times that.
	ErrPackageTooLarge error = &fetchError{"package too large"}
	// ErrUnsafeArchive is part of the error of a package holding an entry
	// that would land outside its directory.
	ErrUnsafeArchive = errors.New("unsafe archive entry")
)

// fetchError is a sentinel that is also an ErrFetch, without repeating
// ErrFetch's text in a message that starts with it already.
type fetchError struct{ msg string }

func (e *fetchError) Error() string        { return e.msg }
func (e *fetchError) Is(target error) bool { return target == ErrFetch }

const (
	// DefaultMaxBytes is MaxBytes' default: 1 GiB.
	DefaultMaxBytes int64 = 1 << 30
	// MaxMaxBytes is the most MaxBytes may be: beyond it a value is a
	// mistake (a unit slip).
	MaxMaxBytes int64 = 64 << 30
	// UnpackFactor bounds an unpacked tree: at most this many times
	// MaxBytes.
	UnpackFactor = 4

	// ChecksumPrefix starts every checksum: the algorithm.
	ChecksumPrefix = "sha256:"

	// Bounds on one package that are not configurable: they only refuse
	// what no app needs.
	maxArchiveFiles  = 100_000
	maxRedirects     = 10
	maxSymlinkTarget = 4096
)

// Config configures a Fetcher.
type Config struct {
	// TempDir receives the download and the unpacked tree; required. It
	// should be on the file system the tree is moved to, so that the move
	// is a rename.
	TempDir string
	// MaxBytes bounds a package (and its unpacked tree, to UnpackFactor
	// times that); default DefaultMaxBytes, at most MaxMaxBytes.
	MaxBytes int64
}

// Fetcher fetches and unpacks app packages. It holds no state between
// fetches (its HTTP client keeps no idle connection), so it needs no Close
// and serves any number of concurrent fetches.
type Fetcher struct {
	cfg  Config
	http *http.Client
}

// New validates cfg and returns a Fetcher.
func New(cfg Config) (*Fetcher, error) {
	if cfg.TempDir == "" {
		return nil, fmt.Errorf("%w: TempDir is required", ErrInvalidConfig)
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxBytes < 1 || cfg.MaxBytes > MaxMaxBytes {
		return nil, fmt.Errorf("%w: MaxBytes is %d, want 1 to %d", ErrInvalidConfig, cfg.MaxBytes, MaxMaxBytes)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// No keep-alive: no idle connection, and none of its goroutines,
	// outlives a fetch.
	tr.DisableKeepAlives = true
	return &Fetcher{cfg: cfg, http: &http.Client{Transport: tr}}, nil
}

// MaxBytes is the bound on one package.
func (f *Fetcher) MaxBytes() int64 { return f.cfg.MaxBytes }

// Fetch retrieves the package at u (at most MaxBytes; checked against
// checksum unless that is empty) and unpacks it into a new directory in
// TempDir, which it returns; the caller moves or removes it. On error
// nothing is left in TempDir. It ends when ctx does (every read checks
// it). Every error is an ErrFetch and names the URL as Redact does.
func (f *Fetcher) Fetch(ctx context.Context, u *url.URL, checksum string) (dir string, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w %s: %w", ErrFetch, Redact(u), err)
		}
	}()
	if err := CheckChecksum(checksum); err != nil {
		return "", err
	}
	pkg, err := f.retrieve(ctx, u, checksum)
	if err != nil {
		return "", err
	}
	defer func() { _ = os.Remove(pkg) }()
	tmp, err := os.MkdirTemp(f.cfg.TempDir, "app-")
	if err != nil {
		return "", err
	}
	if err := unpack(ctx, pkg, path.Base(u.Path), tmp, f.cfg.MaxBytes*UnpackFactor); err != nil {
		_ = os.RemoveAll(tmp)
		return "", err
	}
	if err := ctx.Err(); err != nil {
		_ = os.RemoveAll(tmp)
		return "", err
	}
	return tmp, nil
}

// ParseURL accepts file:///absolute/path, http:// and https:// URLs. Its
// errors are ErrInvalidURL and hold the URL redacted, never as given.
func ParseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error quotes the whole URL, credentials and all.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%w: cannot be parsed: %v", ErrInvalidURL, err)
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return nil, fmt.Errorf("%w %s: no host", ErrInvalidURL, Redact(u))
		}
	case "file":
		if u.Opaque != "" || (u.Host != "" && u.Host != "localhost") || !path.IsAbs(u.Path) {
			return nil, fmt.Errorf("%w %s: want file:///absolute/path", ErrInvalidURL, Redact(u))
		}
	default:
		return nil, fmt.Errorf("%w %s: scheme %q not supported (file, http, https)", ErrInvalidURL, Redact(u), u.Scheme)
	}
	return u, nil
}

// Redact is u as it may be shown: its userinfo (a user name can be a token
// too) and its query (a presigned URL's signature) are replaced by
// "xxxxx", its fragment is dropped.
func Redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	r := *u
	if r.User != nil {
		r.User = url.User("xxxxx")
	}
	if r.RawQuery != "" || r.ForceQuery {
		r.RawQuery, r.ForceQuery = "xxxxx", false
	}
	r.Fragment, r.RawFragment = "", ""
	return r.String()
}

// CheckChecksum accepts "" (no check) and "sha256:" with 64 lower-case hex
// digits, as model.App's appChecksum; anything else is ErrInvalidChecksum.
func CheckChecksum(sum string) error {
	if sum == "" {
		return nil
	}
	h, ok := strings.CutPrefix(sum, ChecksumPrefix)
	if b, err := hex.DecodeString(h); !ok || err != nil || len(b) != 32 || strings.ToLower(h) != h {
		return fmt.Errorf("%w %q: want %s and 64 lower-case hex digits", ErrInvalidChecksum, sum, ChecksumPrefix)
	}
	return nil
}
