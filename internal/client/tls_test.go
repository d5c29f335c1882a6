package client

import (
	"crypto/tls"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hasched/hasched/scheduler/api"
	"github.com/hasched/hasched/scheduler/api/apitest"
	"github.com/hasched/hasched/scheduler/model"
)

// Issue 9, finding 6: the client talks https to a server whose certificate
// a given CA signed, and refuses one it cannot verify.
func TestClientVerifiesTheServerWithTheGivenCA(t *testing.T) {
	ca := apitest.NewCA(t)
	leaf := ca.Issue(t, "hasched")
	svc := apitest.NewService(model.Status{Self: "127.0.0.1:8899"})
	h, err := api.New(api.Config{Service: svc, AuthUser: "root", AuthPassword: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	c := newClient(t, Config{BaseURL: srv.URL, User: "root", Password: "pw", TLS: &tls.Config{RootCAs: ca.Pool()}})
	res(c.TriggerJob(ctx(t), "nope")).mustFail(t, "404")
	if _, err := c.Status(ctx(t)); err != nil {
		t.Fatalf("status over TLS: %v", err)
	}

	untrusting := newClient(t, Config{BaseURL: srv.URL, TLS: &tls.Config{RootCAs: apitest.NewCA(t).Pool()}})
	if _, err := untrusting.Status(ctx(t)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("status with the wrong CA: %v, want a certificate error", err)
	}
}

func (o outcome[T]) mustFail(t *testing.T, want string) {
	t.Helper()
	if o.err == nil || !strings.Contains(o.err.Error(), want) {
		t.Fatalf("error = %v, want one containing %q", o.err, want)
	}
}
