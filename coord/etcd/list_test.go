package etcd

import (
	"fmt"
	"testing"

	"github.com/hasched/hasched/coord"
)

// A list read in pages is the children as they were at its first page,
// whatever changes between the pages: no child twice, none missed, none
// from a later state.
func TestListPagesReadOneRevision(t *testing.T) {
	ctx := testContext(t)
	c := open(t, namespace(t))
	var want []string
	for i := range 10 {
		p := fmt.Sprintf("/p/c%02d", i)
		if _, err := c.Create(ctx, p, []byte(p)); err != nil {
			t.Fatal(err)
		}
		want = append(want, p)
	}
	pages := 0
	changes := []func() error{
		func() error { return c.Delete(ctx, "/p/c09", coord.AnyVersion) },
		func() error { _, err := c.Create(ctx, "/p/c05a", nil); return err },
		func() error { _, err := c.Set(ctx, "/p/c08", []byte("later"), coord.AnyVersion); return err },
	}
	nodes, err := c.list(ctx, "/p", 3, func() {
		if pages < len(changes) {
			if err := changes[pages](); err != nil {
				t.Errorf("change between pages: %v", err)
			}
		}
		pages++
	})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if pages != 3 {
		t.Errorf("10 children in pages of 3 read %d more pages, want 3", pages)
	}
	var got []string
	for _, n := range nodes {
		if string(n.Value) != n.Path {
			t.Errorf("%s listed with %q, a later value", n.Path, n.Value)
		}
		got = append(got, n.Path)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("listed %v, want the first page's state %v", got, want)
	}
	// And a list now sees the changes.
	after, err := c.List(ctx, "/p")
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 10 || after[6].Path != "/p/c05a" || after[9].Path != "/p/c08" || string(after[9].Value) != "later" {
		t.Errorf("a new list reads %v", after)
	}
}
