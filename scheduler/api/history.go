package api

import (
	"context"
	"errors"
	"net/url"
	"strconv"

	"github.com/hasched/hasched/scheduler/model"
)

// History reads run history (history.Reader, history.Recorder): a job's
// last runs, the latest first. The API checks the job name and the limit
// before it asks.
type History interface {
	Executions(ctx context.Context, job string, limit int) ([]model.Execution, error)
}

// ErrHistoryOff answers GET /api/job/{job}/executions on a server without
// run history (501).
var ErrHistoryOff = errors.New("api: run history is not configured on this server")

// executions serves GET /api/job/{job}/executions?limit=N: the job's last N
// runs (model.DefaultExecutionsLimit without limit, at most
// model.MaxExecutionsLimit), the latest first. A job without history, or
// not registered (history outlives its job), has an empty list. Every
// process serves it from the store: no forwarding.
func (s *server) executions(c *call) (any, error) {
	job := c.params["job"]
	if err := model.ValidateName("job", job, true); err != nil {
		return nil, err
	}
	limit, err := executionsLimit(c.r.URL.Query())
	if err != nil {
		return nil, err
	}
	if s.cfg.History == nil {
		return nil, ErrHistoryOff
	}
	exs, err := s.cfg.History.Executions(c.ctx, job, limit)
	return nonNil(exs), err
}

// executionsLimit reads the limit parameter: absent is the default; more
// than one, not a number, or out of [1, model.MaxExecutionsLimit] is a
// 400.
func executionsLimit(q url.Values) (int, error) {
	vals, ok := q["limit"]
	if !ok {
		return model.DefaultExecutionsLimit, nil
	}
	if len(vals) != 1 {
		return 0, &model.ValidationError{Field: "limit", Reason: "is given more than once"}
	}
	n, err := strconv.Atoi(vals[0])
	if err != nil {
		return 0, &model.ValidationError{Field: "limit", Reason: strconv.Quote(vals[0]) + " is not a whole number"}
	}
	if err := model.CheckExecutionsLimit(n); err != nil {
		return 0, err
	}
	return n, nil
}
