package apppkg

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

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
	n, err := CopyLimited(u.ctx, f, r, u.limit-u.bytes)
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

func notExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
