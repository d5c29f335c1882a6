package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hasched/hasched/scheduler/api/apitest"
	"github.com/hasched/hasched/scheduler/model"
)

// exposition stands in for the metrics handler: Prometheus' text, not JSON.
var exposition = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.Context().Err() != nil {
		http.Error(w, "request context already done", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write([]byte("# HELP hasched_is_leader x\n# TYPE hasched_is_leader gauge\nhasched_is_leader 1\n"))
})

// GET /metrics hands the request to Config.Metrics, whose response goes
// out as it is written; without it the path is an ordinary 404.
func TestMetricsServesTheHandlersText(t *testing.T) {
	svc := apitest.NewService(model.Status{Self: "a:1"})
	r := do(t, newHandler(t, svc, nil), "GET", "/metrics", "")
	want(t, r, http.StatusNotFound)

	h := newHandler(t, svc, func(c *Config) { c.Metrics = exposition })
	r = do(t, h, "GET", "/metrics", "")
	if r.code != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") || !strings.Contains(r.body, "\nhasched_is_leader 1\n") {
		t.Fatalf("GET /metrics: %d %q %q, want 200 and the metrics handler's text", r.code, r.header.Get("Content-Type"), r.body)
	}
	r = do(t, h, "POST", "/metrics", "{}")
	want(t, r, http.StatusMethodNotAllowed)
}

// /metrics is a read: open unless AuthReads, then for either account.
func TestMetricsFollowsAuthReads(t *testing.T) {
	svc := apitest.NewService(model.Status{Self: "a:1"})
	h := newHandler(t, svc, func(c *Config) { withAccounts(c); c.Metrics = exposition })
	if r := do(t, h, "GET", "/metrics", ""); r.code != http.StatusOK {
		t.Fatalf("GET /metrics without AuthReads: %d, want 200", r.code)
	}
	h = newHandler(t, svc, func(c *Config) { withAccounts(c); c.AuthReads = true; c.Metrics = exposition })
	want(t, do(t, h, "GET", "/metrics", ""), http.StatusUnauthorized)
	want(t, do(t, h, "GET", "/metrics", "", "Authorization", basicAuth("guest", "wrong")), http.StatusUnauthorized)
	for _, who := range []string{basicAuth("guest", "gu3st"), basicAuth("root", "s3cret")} {
		if r := do(t, h, "GET", "/metrics", "", "Authorization", who); r.code != http.StatusOK {
			t.Errorf("GET /metrics with an account and AuthReads: %d %s, want 200", r.code, r.body)
		}
	}
}
