package zk

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/coord/coordtest"
	"github.com/hasched/hasched/internal/zktest"
)

const testDigest = "hasched:s3cret"

// rawConn is a go-zookeeper connection of the test's own, with the digest
// if one is given, closed when the test ends.
func rawConn(t *testing.T, digest string) *zk.Conn {
	t.Helper()
	conn, _, err := zk.Connect(zktest.Servers(t), 5*time.Second, zk.WithLogger(zk.DefaultLogger))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	if digest != "" {
		if err := conn.AddAuth("digest", []byte(digest)); err != nil {
			t.Fatal(err)
		}
	}
	return conn
}

// walk lists full and every node below it.
func walk(t *testing.T, conn *zk.Conn, full string) []string {
	t.Helper()
	names, _, err := conn.Children(full)
	if err != nil {
		t.Fatalf("Children(%s): %v", full, err)
	}
	out := []string{full}
	for _, n := range names {
		out = append(out, walk(t, conn, full+"/"+n)...)
	}
	return out
}

// checkClosed fails the test unless every node under root carries the
// digest's ACL and an unauthenticated client can neither read, list, write,
// create nor delete there (issue 9, finding 7: every node was
// world:anyone:cdrwa).
func checkClosed(t *testing.T, root, node string) {
	t.Helper()
	owner := rawConn(t, testDigest)
	want := aclFor(testDigest)
	for _, p := range walk(t, owner, root) {
		acl, _, err := owner.GetACL(p)
		if err != nil {
			t.Fatalf("GetACL(%s): %v", p, err)
		}
		if !slices.Equal(acl, want) {
			t.Errorf("%s has the ACL %v, want %v", p, acl, want)
		}
	}
	anon := rawConn(t, "")
	if _, _, err := anon.Get(root + node); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("an unauthenticated Get of %s: %v, want ErrNoAuth", node, err)
	}
	if _, _, err := anon.Children(root); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("an unauthenticated Children of the namespace: %v, want ErrNoAuth", err)
	}
	if _, err := anon.Set(root+node, []byte(`{"evil":true}`), -1); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("an unauthenticated Set of %s: %v, want ErrNoAuth", node, err)
	}
	if _, err := anon.Create(root+"/config/job/evil", nil, 0, zk.WorldACL(zk.PermAll)); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("an unauthenticated Create in the namespace: %v, want ErrNoAuth", err)
	}
	if err := anon.Delete(root+node, -1); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("an unauthenticated Delete of %s: %v, want ErrNoAuth", node, err)
	}
	// Another identity is no better.
	other := rawConn(t, "intruder:guess")
	if _, _, err := other.Get(root + node); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("another digest's Get of %s: %v, want ErrNoAuth", node, err)
	}
}

// With a digest, every node hasched makes — plain, with parents, ephemeral,
// sequential, in a batch, fenced, an election's candidates — is hasched's
// alone, and sessions without the digest are refused the namespace.
func TestDigestACLKeepsOtherClientsOut(t *testing.T) {
	h, ctx, ns := serverTest(t)
	h.digest = testDigest
	c, _ := h.openTest(t, ctx, ns)
	if _, err := c.Create(ctx, "/config/job/a", []byte(`{"jobName":"a"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, "/eph", nil, coord.Ephemeral()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, "/seq/s-", nil, coord.Sequential()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(ctx, coord.CreateOp("/config/job/b", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	l, err := c.Campaign(ctx, "/ha/election", []byte("me"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Writer().Create(ctx, "/state/ready/a", []byte("r")); err != nil {
		t.Fatal(err)
	}
	checkClosed(t, "/"+ns, "/config/job/a")

	for name, digest := range map[string]string{"no digest": "", "another digest": "intruder:guess"} {
		_, _, err := h.openWith(ctx, ns, func(cfg *Config) { cfg.Digest = digest })
		if !errors.Is(err, ErrNotAuthorized) {
			t.Errorf("%s: New on the namespace: %v, want ErrNotAuthorized", name, err)
		}
	}
	// The same digest by URL, from a file.
	file := filepath.Join(t.TempDir(), "digest")
	if err := os.WriteFile(file, []byte(testDigest+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	byURL, err := coord.Open(ctx, "zk://"+strings.Join(h.servers, ",")+"/"+ns+"?"+url.Values{"digest-file": {file}}.Encode())
	if err != nil {
		t.Fatalf("coord.Open with digest-file: %v", err)
	}
	defer byURL.Close()
	if n, err := byURL.Get(ctx, "/config/job/a"); err != nil || string(n.Value) != `{"jobName":"a"}` {
		t.Fatalf("Get through the URL's digest = %q, %v", n.Value, err)
	}
}

// A namespace made before the digest was configured is open node by node;
// the first session with a digest closes all of it.
func TestDigestClosesANamespaceMadeOpen(t *testing.T) {
	h, ctx, ns := serverTest(t)
	open, _, err := h.openWith(ctx, ns, func(cfg *Config) { cfg.Digest = "" })
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/config/job/a", "/config/app/x", "/state/ready/a"} {
		if _, err := open.Create(ctx, p, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	_ = open.Close()
	anon := rawConn(t, "")
	if _, _, err := anon.Get("/" + ns + "/config/job/a"); err != nil {
		t.Fatalf("before: an unauthenticated Get: %v (the namespace should still be open)", err)
	}
	h.digest = testDigest
	c, _ := h.openTest(t, ctx, ns)
	if n, err := c.Get(ctx, "/config/job/a"); err != nil || string(n.Value) != "v" {
		t.Fatalf("after: Get = %q, %v", n.Value, err)
	}
	checkClosed(t, "/"+ns, "/config/job/a")
}

// The conformance suite on sessions with a digest: every scenario works
// with the ACLs in place.
func TestConformanceWithDigest(t *testing.T) {
	h := newHarness(t)
	h.digest = testDigest
	coordtest.Run(t, h)
}
