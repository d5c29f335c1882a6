package executor

import (
	"context"
	"errors"
	"testing"
)

func TestCheckStart(t *testing.T) {
	if err := CheckStart(context.Background()); err != nil {
		t.Fatalf("no check: %v, want nil", err)
	}
	refused := errors.New("session may be lost")
	var err error
	ctx := WithStartCheck(context.Background(), func() error { return err })
	if got := CheckStart(ctx); got != nil {
		t.Fatalf("check passing: %v, want nil", got)
	}
	err = refused
	if got := CheckStart(ctx); !errors.Is(got, refused) {
		t.Fatalf("check failing: %v, want %v", got, refused)
	}
	// Derived contexts carry it too.
	child, cancel := context.WithCancel(ctx)
	defer cancel()
	if got := CheckStart(child); !errors.Is(got, refused) {
		t.Fatalf("derived context: %v, want %v", got, refused)
	}
}
