package coord

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxPathDepth is the deepest path accepted. etcd caps a transaction at 128
// operations and making a node checks or creates every ancestor in one
// transaction, so the limit is set below that, for both backends alike.
const MaxPathDepth = 100

// ValidatePath checks path against the rules shared by every backend: absolute,
// "/"-separated, no trailing "/", no empty, "." or ".." segment, valid UTF-8
// without the code points ZooKeeper refuses (U+0000–U+001F, U+007F–U+009F,
// U+D800–U+F8FF, U+FFF0–U+FFFF and everything above U+FFFF), at most
// MaxPathDepth segments. "/" itself is valid (the namespace's root). The error
// wraps ErrInvalidPath and says what is wrong.
func ValidatePath(path string) error {
	if path == "/" {
		return nil
	}
	if path == "" {
		return fmt.Errorf("%w: empty path", ErrInvalidPath)
	}
	if path[0] != '/' {
		return fmt.Errorf("%w: %q is not absolute", ErrInvalidPath, path)
	}
	if !utf8.ValidString(path) {
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidPath, path)
	}
	segments := strings.Split(path[1:], "/")
	if len(segments) > MaxPathDepth {
		return fmt.Errorf("%w: %d segments, at most %d", ErrInvalidPath, len(segments), MaxPathDepth)
	}
	for i, s := range segments {
		switch s {
		case "":
			if i == len(segments)-1 {
				return fmt.Errorf("%w: %q ends with /", ErrInvalidPath, path)
			}
			return fmt.Errorf("%w: %q has an empty segment", ErrInvalidPath, path)
		case ".", "..":
			return fmt.Errorf("%w: %q has a %q segment", ErrInvalidPath, path, s)
		}
	}
	for i, r := range path {
		if forbiddenRune(r) {
			return fmt.Errorf("%w: %q has the forbidden character U+%04X at byte %d", ErrInvalidPath, path, r, i)
		}
	}
	return nil
}

// ValidateNodePath is ValidatePath for operations on one node, which the
// root is not: it exists implicitly and cannot be created, read, changed or
// removed.
func ValidateNodePath(path string) error {
	if path == "/" {
		return fmt.Errorf("%w: the root is not a node", ErrInvalidPath)
	}
	return ValidatePath(path)
}

func forbiddenRune(r rune) bool {
	switch {
	case r <= 0x1f, r >= 0x7f && r <= 0x9f:
		return true
	case r >= 0xd800 && r <= 0xf8ff:
		return true
	case r >= 0xfff0:
		return true
	}
	return false
}

// ValidateName checks one path segment, such as a node name a user chose, by
// the same rules.
func ValidateName(name string) error {
	if strings.Contains(name, "/") {
		return fmt.Errorf("%w: name %q contains /", ErrInvalidPath, name)
	}
	return ValidateNodePath("/" + name)
}

// ValidateNamespace checks a backend's namespace: one segment of letters,
// digits, '.', '_' or '-', so that two namespaces can never nest.
func ValidateNamespace(ns string) error {
	if ns == "" || ns == "." || ns == ".." {
		return fmt.Errorf("%w: namespace %q", ErrInvalidPath, ns)
	}
	for _, r := range ns {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			return fmt.Errorf("%w: namespace %q may hold only letters, digits, '.', '_' and '-'", ErrInvalidPath, ns)
		}
	}
	return nil
}

// CheckValue refuses values larger than MaxValueSize.
func CheckValue(value []byte) error {
	if len(value) > MaxValueSize {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrValueTooLarge, len(value), MaxValueSize)
	}
	return nil
}

// Parent returns the parent of a valid node path ("/" for a top-level node).
func Parent(path string) string {
	i := strings.LastIndexByte(path, '/')
	if i <= 0 {
		return "/"
	}
	return path[:i]
}

// Base returns the last segment of a valid node path.
func Base(path string) string {
	return path[strings.LastIndexByte(path, '/')+1:]
}

// Join appends name to a valid path.
func Join(parent, name string) string {
	if parent == "/" {
		return "/" + name
	}
	return parent + "/" + name
}

// Depth counts a valid path's segments; the root has depth 0.
func Depth(path string) int {
	if path == "/" {
		return 0
	}
	return strings.Count(path, "/")
}

// SequenceWidth is the number of digits a Sequential create appends.
const SequenceWidth = 10

// FormatSequence renders a sequence counter as Sequential creates append it.
func FormatSequence(n int64) string {
	return fmt.Sprintf("%0*d", SequenceWidth, n)
}
