package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/hasched/hasched/scheduler/api"
)

// maxErrorBody caps what is read of an error answer to a log request.
const maxErrorBody = 64 << 10

// TaskLog opens a task's output (GET /api/tasks/{id}/log), from whichever
// process's worker ran it. The caller reads and closes the answer. The
// client's overall Timeout does not apply, so that a followed log (q.Follow)
// lasts until the task has ended and its output is read, the server ends
// it, or ctx ends; the wait for the answer to begin keeps its bound.
func (c *Client) TaskLog(ctx context.Context, taskID string, q api.LogQuery) (io.ReadCloser, error) {
	v := url.Values{}
	if q.Stream != "" {
		v.Set("stream", q.Stream)
	}
	if q.Tail > 0 {
		v.Set("tail", strconv.Itoa(q.Tail))
	}
	if q.Follow {
		v.Set("follow", "1")
	}
	if q.Worker != "" {
		v.Set("worker", q.Worker)
	}
	path := "/api/tasks/" + seg(taskID) + "/log"
	target := c.base.String() + path
	if len(v) > 0 {
		target += "?" + v.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	req.Header.Set("Accept", "text/plain")
	req.Header.Set("User-Agent", c.userAgent)
	if c.user != "" {
		req.SetBasicAuth(c.user, c.password)
	}
	hc := *c.http
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("GET %s: %w", target, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return nil, responseError(resp, b)
	}
	return resp.Body, nil
}
