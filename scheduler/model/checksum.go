package model

import (
	"encoding/hex"
	"strings"
)

// AppChecksumPrefix starts every appChecksum: the algorithm, so that
// another can be added without guessing from the length.
const AppChecksumPrefix = "sha256:"

// checkAppChecksum validates an app's appChecksum: empty (no check), or
// "sha256:" and 64 hex digits. Lower case only, so that one digest has one
// spelling and comparing the executor's result is a string compare.
func checkAppChecksum(sum string) error {
	if sum == "" {
		return nil
	}
	h, ok := strings.CutPrefix(sum, AppChecksumPrefix)
	if !ok {
		return &ValidationError{Field: "appChecksum", Reason: `must be "sha256:" followed by 64 lower-case hex digits`}
	}
	if b, err := hex.DecodeString(h); err != nil || len(b) != 32 || strings.ToLower(h) != h {
		return &ValidationError{Field: "appChecksum", Reason: "must be sha256: and 64 lower-case hex digits (the package's SHA-256)"}
	}
	return nil
}
