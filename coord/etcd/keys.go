package etcd

import (
	"fmt"

	"github.com/hasched/hasched/coord"
)

// keyspace maps node paths to etcd keys. A node's key carries its depth so
// that the direct children of a node are one contiguous key range without
// the grandchildren in it; namespaces are single segments, so two
// namespaces never share a key.
type keyspace struct {
	root string // "/" + namespace
}

// depthTag is wide enough for coord.MaxPathDepth, and fixed-width so that a
// prefix of one depth never matches another.
func depthTag(d int) string { return fmt.Sprintf("%03d", d) }

// node is the key of the node at a valid node path.
func (k keyspace) node(path string) string {
	return k.root + "/n/" + depthTag(coord.Depth(path)) + path
}

// children is the key prefix of the direct children of path ("/" included).
func (k keyspace) children(path string) string {
	return k.descendants(path, coord.Depth(path)+1)
}

// descendants is the key prefix of the nodes below path at depth d.
func (k keyspace) descendants(path string, d int) string {
	if path == "/" {
		return k.root + "/n/" + depthTag(d) + "/"
	}
	return k.root + "/n/" + depthTag(d) + path + "/"
}

// electionPrefix is the prefix handed to concurrency.NewElection: it adds a
// "/" and the lease in hex, which makes each candidate's key exactly the key
// of a child of the election node.
func (k keyspace) electionPrefix(election string) string {
	p := k.children(election)
	return p[:len(p)-1]
}

// seq is the key of the Sequential counter of the children of parent.
func (k keyspace) seq(parent string) string {
	if parent == "/" {
		return k.root + "/s/"
	}
	return k.root + "/s" + parent
}

// seqBelow is the prefix of the Sequential counters of every node below
// path (not path's own, which seq names).
func (k keyspace) seqBelow(path string) string {
	return k.root + "/s" + path + "/"
}

// ancestors lists the nodes above a valid node path, top first, without the
// root: "/a/b/c" → "/a", "/a/b".
func ancestors(path string) []string {
	var out []string
	for i := 1; i < len(path); i++ {
		if path[i] == '/' {
			out = append(out, path[:i])
		}
	}
	return out
}
