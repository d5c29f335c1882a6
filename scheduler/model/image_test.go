package model

import (
	"errors"
	"strings"
	"testing"
)

func TestAppImageIsBoundedAndHasNoSpaces(t *testing.T) {
	for _, ok := range []string{"", "busybox", "registry.local:5000/team/job:1.2", "alpine@sha256:" + strings.Repeat("a", 64), strings.Repeat("a", MaxImageLength)} {
		if _, err := (App{AppName: "a", Image: ok}).Check(); err != nil {
			t.Errorf("image %.40q: %v", ok, err)
		}
	}
	for _, bad := range []string{"busy box", "busybox\n", "a\tb", "img\x00", "ïmage", strings.Repeat("a", MaxImageLength+1)} {
		_, err := (App{AppName: "a", Image: bad}).Check()
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field != "image" {
			t.Errorf("image %.40q: %v, want a ValidationError on image", bad, err)
		}
	}
	if _, err := (App{AppName: "a", Image: strings.Repeat("a", MaxImageLength+1)}).Check(); !errors.Is(err, ErrOutOfBounds) {
		t.Errorf("a long image: %v, want ErrOutOfBounds", err)
	}
}

func TestAppImageDecodes(t *testing.T) {
	a, err := DecodeApp(strings.NewReader(`{"appName":"a","bootstrapScript":"run","image":"registry.local/a:1"}`))
	if err != nil || a.Image != "registry.local/a:1" {
		t.Fatalf("DecodeApp = %+v, %v", a, err)
	}
	if _, err := (App{AppName: "a"}).Check(); err != nil {
		t.Errorf("an app without an image: %v", err)
	}
}
