package coord

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestValidatePathAcceptsTheContractsPaths(t *testing.T) {
	for _, p := range []string{"/", "/a", "/a/b", "/with space", "/ünïcode-名前", "/..a", "/a.", "/\u00a0", strings.Repeat("/x", MaxPathDepth)} {
		if err := ValidatePath(p); err != nil {
			t.Errorf("ValidatePath(%q) = %v, want nil", p, err)
		}
	}
}

func TestValidatePathRefusesEveryBadForm(t *testing.T) {
	for _, p := range []string{"", "a", "/a/", "//a", "/a//b", "/./a", "/a/..", "/a\x00b", "/a\x1fb", "/a\x7fb",
		"/a\u0085b", "/a\ue000b", "/a\ufff0b", "/a\U0001F600b", "/a\xffb", strings.Repeat("/x", MaxPathDepth+1)} {
		if err := ValidatePath(p); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("ValidatePath(%q) = %v, want ErrInvalidPath", p, err)
		}
	}
	if err := ValidateNodePath("/"); !errors.Is(err, ErrInvalidPath) {
		t.Errorf("ValidateNodePath(/) = %v, want ErrInvalidPath", err)
	}
}

func TestPathHelpers(t *testing.T) {
	cases := []struct{ path, parent, base string }{{"/a", "/", "a"}, {"/a/b/c", "/a/b", "c"}}
	for _, c := range cases {
		if Parent(c.path) != c.parent || Base(c.path) != c.base || Join(Parent(c.path), Base(c.path)) != c.path {
			t.Errorf("%s: Parent %q Base %q", c.path, Parent(c.path), Base(c.path))
		}
	}
	if Depth("/") != 0 || Depth("/a/b") != 2 || FormatSequence(42) != "0000000042" {
		t.Error("Depth or FormatSequence")
	}
}

func TestNamespacesAreSingleSegments(t *testing.T) {
	for _, ns := range []string{"hasched", "a.b_c-1"} {
		if err := ValidateNamespace(ns); err != nil {
			t.Errorf("ValidateNamespace(%q) = %v", ns, err)
		}
	}
	for _, ns := range []string{"", ".", "..", "a/b", "a b", "ü"} {
		if err := ValidateNamespace(ns); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("ValidateNamespace(%q) = %v, want ErrInvalidPath", ns, err)
		}
	}
	u, _ := url.Parse("etcd://h1:2379,h2:2379/")
	if ns, err := URLNamespace(u, "hasched"); err != nil || ns != "hasched" {
		t.Errorf("URLNamespace of an empty path = %q, %v; want the default", ns, err)
	}
}

func TestCheckValueRefusesOneByteTooMany(t *testing.T) {
	if err := CheckValue(make([]byte, MaxValueSize)); err != nil {
		t.Fatal(err)
	}
	if err := CheckValue(make([]byte, MaxValueSize+1)); !errors.Is(err, ErrValueTooLarge) {
		t.Fatalf("got %v, want ErrValueTooLarge", err)
	}
}

func TestOpenRefusesUnknownSchemes(t *testing.T) {
	if _, err := Open(context.Background(), "consul://127.0.0.1:8500/x"); !errors.Is(err, ErrUnsupportedURL) {
		t.Fatalf("got %v, want ErrUnsupportedURL", err)
	}
}

func TestRunElectionRefusesBadArguments(t *testing.T) {
	ctx := context.Background()
	open := func(context.Context) (Coordinator, error) { return nil, errors.New("unused") }
	lead := func(context.Context, Coordinator, Leadership) error { return nil }
	if err := RunElection(ctx, nil, "/e", nil, lead); err == nil {
		t.Error("nil open accepted")
	}
	if err := RunElection(ctx, open, "/e", nil, nil); err == nil {
		t.Error("nil lead accepted")
	}
	if err := RunElection(ctx, open, "e", nil, lead); !errors.Is(err, ErrInvalidPath) {
		t.Errorf("relative election: %v", err)
	}
	if err := RunElection(ctx, open, "/e", nil, lead, WithElectionRetry(0, 0)); err == nil {
		t.Error("zero back-off accepted")
	}
}
