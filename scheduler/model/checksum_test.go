package model

import (
	"errors"
	"strings"
	"testing"
)

func TestAppChecksumValidation(t *testing.T) {
	good := "sha256:" + strings.Repeat("ab", 32)
	for sum, ok := range map[string]bool{
		"":                                   true,
		good:                                 true,
		strings.ToUpper(good):                false,
		"sha256:" + strings.Repeat("AB", 32): false,
		"sha256:" + strings.Repeat("ab", 31): false,
		"md5:" + strings.Repeat("ab", 16):    false,
		strings.Repeat("ab", 32):             false,
		"sha256:" + strings.Repeat("zz", 32): false,
	} {
		_, err := App{AppName: "a", AppChecksum: sum}.Check()
		if ok && err != nil {
			t.Errorf("%q refused: %v", sum, err)
		}
		var ve *ValidationError
		if !ok && (!errors.As(err, &ve) || ve.Field != "appChecksum") {
			t.Errorf("%q: %v, want a ValidationError on appChecksum", sum, err)
		}
	}
}
