package apppkg

import (
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
	"syscall"
)

// retrieve copies the package into a file in TempDir, whatever its scheme,
// so that it is read once (hashed on the way), bounded, and unpacked from a
// file nobody else writes.
func (f *Fetcher) retrieve(ctx context.Context, u *url.URL, want string) (file string, err error) {
	out, err := os.CreateTemp(f.cfg.TempDir, "download-")
	if err != nil {
		return "", err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(out.Name())
		}
	}()
	h := sha256.New()
	w := io.MultiWriter(out, h)
	if u.Scheme == "file" {
		err = f.copyLocal(ctx, u.Path, w)
	} else {
		err = f.download(ctx, u, w)
	}
	if err != nil {
		return "", err
	}
	if got := ChecksumPrefix + hex.EncodeToString(h.Sum(nil)); want != "" && got != want {
		return "", fmt.Errorf("%w: appChecksum is %s, the package's is %s", ErrChecksum, want, got)
	}
	return out.Name(), nil
}

// copyLocal copies a file:// package: a regular file only, at most
// MaxBytes, cancellably.
func (f *Fetcher) copyLocal(ctx context.Context, name string, w io.Writer) error {
	in, err := OpenRegular(name, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	if fi, err := in.Stat(); err == nil && fi.Size() > f.cfg.MaxBytes {
		return fmt.Errorf("%w: %d bytes, at most %d allowed", ErrPackageTooLarge, fi.Size(), f.cfg.MaxBytes)
	}
	_, err = CopyLimited(ctx, w, in, f.cfg.MaxBytes)
	return err
}

// download GETs u into w. Redirects are followed only to the host the
// user configured, and never from https down to http: the URL in the app's
// configuration is the only place packages come from.
func (f *Fetcher) download(ctx context.Context, u *url.URL, w io.Writer) error {
	client := *f.http
	client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxRedirects {
			return fmt.Errorf("more than %d redirects", maxRedirects)
		}
		if req.URL.Host != u.Host || (u.Scheme == "https" && req.URL.Scheme != "https") {
			return fmt.Errorf("redirect to %s refused: packages are fetched from %s://%s only",
				Redact(req.URL), u.Scheme, u.Host)
		}
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return errors.New("cannot make the request") // its error quotes the URL
	}
	resp, err := client.Do(req)
	if err != nil {
		// A *url.Error quotes the URL with its query (only the password is
		// stripped); the caller names the URL, redacted.
		var ue *url.Error
		if errors.As(err, &ue) {
			return ue.Err
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	if resp.ContentLength > f.cfg.MaxBytes {
		return fmt.Errorf("%w: %d bytes, at most %d allowed", ErrPackageTooLarge, resp.ContentLength, f.cfg.MaxBytes)
	}
	_, err = CopyLimited(ctx, w, resp.Body, f.cfg.MaxBytes)
	return err
}

// OpenRegular opens a file for reading only if it is a regular file. The
// open does not block (O_NONBLOCK: opening a FIFO without a writer would
// hang, uncancellably), and fstat then refuses FIFOs, devices (/dev/zero
// never ends) and sockets with ErrNotRegularFile. flags are added to the
// open's (O_NOFOLLOW, say).
func OpenRegular(path string, flags int) (*os.File, error) {
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

// CopyLimited copies at most limit bytes of r to w, cancellably (it ends
// within one read of ctx's end); more is ErrPackageTooLarge.
func CopyLimited(ctx context.Context, w io.Writer, r io.Reader, limit int64) (int64, error) {
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
