package etcd

import (
	"fmt"
	"testing"
)

// coverRanges keeps a batch's absence checks within etcd's limit on
// compares: exact while they fit, then one range per depth, then one.
func TestCoverRanges(t *testing.T) {
	k := keyspace{root: "/ns"}
	var rs []keyRange
	for i := range 60 {
		rs = append(rs, singleKey(k.node(fmt.Sprintf("/a/n%02d", i))))
		rs = append(rs, prefixRange(k.children(fmt.Sprintf("/a/n%02d", i))))
	}
	if got := coverRanges(rs, len(rs)); len(got) != len(rs) {
		t.Fatalf("ranges that fit were merged: %d of %d", len(got), len(rs))
	}
	got := coverRanges(rs, 10)
	if len(got) != 2 {
		t.Fatalf("two depths gave %d ranges: %v", len(got), got)
	}
	one := coverRanges(rs, 1)
	if len(one) != 1 {
		t.Fatalf("a budget of one gave %d ranges", len(one))
	}
	for _, cover := range [][]keyRange{got, one} {
		for _, r := range rs {
			covered := false
			for _, c := range cover {
				covered = covered || c.start <= r.start && r.end <= c.end
			}
			if !covered {
				t.Fatalf("%q..%q is not covered by %v", r.start, r.end, cover)
			}
		}
	}
	if d := depthOf(k.node("/a/b")); d != "002" {
		t.Fatalf("depthOf(%q) = %q", k.node("/a/b"), d)
	}
}
