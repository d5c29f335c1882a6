package coord

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzValidateNodePath: the path rules never panic, refuse with
// ErrInvalidPath only, and a path they accept is one the helpers built on
// them can take apart and put together again (Parent, Base, Join, Depth).
func FuzzValidateNodePath(f *testing.F) {
	for _, s := range []string{"/", "", "/a", "/a/b", "a/b", "/a/", "//a", "/a/./b", "/a/../b", "/\x00", "/\u0080", "/\ufff0", "/日本/ジョブ", "/\xff", strings.Repeat("/a", MaxPathDepth), strings.Repeat("/a", MaxPathDepth+1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		err := ValidateNodePath(p)
		if err != nil {
			if !errors.Is(err, ErrInvalidPath) {
				t.Fatalf("ValidateNodePath(%q) = %v, not an ErrInvalidPath", p, err)
			}
			return
		}
		switch {
		case p == "/" || !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.Contains(p, "//"):
			t.Fatalf("ValidateNodePath accepted %q", p)
		case !utf8.ValidString(p) || strings.ContainsFunc(p, forbiddenRune):
			t.Fatalf("ValidateNodePath accepted %q with a forbidden character", p)
		case Depth(p) < 1 || Depth(p) > MaxPathDepth:
			t.Fatalf("ValidateNodePath accepted %q of depth %d", p, Depth(p))
		}
		parent, base := Parent(p), Base(p)
		if err := ValidatePath(parent); err != nil {
			t.Fatalf("the parent %q of valid %q is invalid: %v", parent, p, err)
		}
		if err := ValidateName(base); err != nil {
			t.Fatalf("the base %q of valid %q is invalid: %v", base, p, err)
		}
		if got := Join(parent, base); got != p {
			t.Fatalf("Join(Parent(%q), Base(%q)) = %q", p, p, got)
		}
		if Depth(parent) != Depth(p)-1 {
			t.Fatalf("Depth(%q) = %d, its parent's %d", p, Depth(p), Depth(parent))
		}
	})
}

// FuzzValidateName: a valid name is one segment that makes a valid node
// path under the root and under any valid path short of the depth limit.
func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"", "a", ".", "..", "a/b", "job_1", "\x7f", "日本", "\xc3", "a\u2028b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateName(name)
		if err != nil {
			if !errors.Is(err, ErrInvalidPath) {
				t.Fatalf("ValidateName(%q) = %v, not an ErrInvalidPath", name, err)
			}
			return
		}
		if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
			t.Fatalf("ValidateName accepted %q", name)
		}
		for _, parent := range []string{"/", "/config/job"} {
			p := Join(parent, name)
			if err := ValidateNodePath(p); err != nil {
				t.Fatalf("valid name %q makes invalid path %q: %v", name, p, err)
			}
			if Base(p) != name || Parent(p) != parent {
				t.Fatalf("Base/Parent(%q) = %q, %q; want %q, %q", p, Base(p), Parent(p), name, parent)
			}
		}
	})
}
