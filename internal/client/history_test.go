package client

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/api"
	"github.com/hasched/hasched/scheduler/model"
)

// historyFunc adapts a function to api.History.
type historyFunc func(ctx context.Context, job string, limit int) ([]model.Execution, error)

func (f historyFunc) Executions(ctx context.Context, job string, limit int) ([]model.Execution, error) {
	return f(ctx, job, limit)
}

func TestExecutionsRoundTrips(t *testing.T) {
	end := time.Date(2026, 12, 2, 10, 0, 30, 0, time.UTC)
	var asked []string
	_, srv := newServer(t, func(cfg *api.Config) {
		cfg.History = historyFunc(func(_ context.Context, job string, limit int) ([]model.Execution, error) {
			asked = append(asked, job)
			if job == "empty" {
				return nil, nil
			}
			return []model.Execution{{TaskID: "t", Job: job, CompleteTime: end, State: "FINISHED", Success: true}}[:min(limit, 1)], nil
		})
	})
	c := newClient(t, Config{BaseURL: srv.URL})
	x := ctx(t)
	// A name that needs escaping reaches the server whole.
	exs, err := c.Executions(x, "a b", 5)
	if err != nil || len(exs) != 1 || exs[0].Job != "a b" || !exs[0].CompleteTime.Equal(end) || !exs[0].Success {
		t.Fatalf("Executions = %+v, %v", exs, err)
	}
	if exs, err := c.Executions(x, "empty", 0); err != nil || exs == nil || len(exs) != 0 {
		t.Fatalf("Executions of a job without history = %#v, %v; want an empty, non-nil list", exs, err)
	}
	_, err = c.Executions(x, "j", model.MaxExecutionsLimit+1)
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != http.StatusBadRequest || e.Field != "limit" {
		t.Fatalf("Executions(limit too large) = %v, want a 400 on limit", err)
	}
	if len(asked) != 2 || asked[0] != "a b" {
		t.Fatalf("the server's history was asked for %q", asked)
	}
}
