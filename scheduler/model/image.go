package model

import (
	"fmt"
	"unicode"
)

// MaxImageLength bounds an app's image: a registry host, a repository path
// of up to 255 characters, a tag and a sha256 digest fit well within it.
const MaxImageLength = 512

// checkImage validates an app's image: empty (the executor's default), or
// a reference without spaces or control characters, bounded. What the
// container runtime accepts beyond that (the reference grammar, whether the
// image exists) it says itself, as the task's status.
func checkImage(image string) error {
	if len(image) > MaxImageLength {
		return &ValidationError{Field: "image", Reason: fmt.Sprintf("is %d characters, at most %d", len(image), MaxImageLength), Err: ErrOutOfBounds}
	}
	for _, r := range image {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r > unicode.MaxASCII {
			return &ValidationError{Field: "image", Reason: fmt.Sprintf("has %q: an image reference is printable ASCII without spaces", r)}
		}
	}
	return nil
}
