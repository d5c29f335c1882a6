package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hasched/hasched/scheduler/model"
)

// Task logs: GET /api/tasks/{id}/log?stream=stdout|stderr&tail=N&follow=1.
//
// A task's output is a pair of files in the work directory of the process
// that ran it (package scheduler/executor/local), on that host. Any
// process answers: it serves the log from its own work directory if the
// task is there; else it asks TaskLogs.Locate which worker ran it (the
// store's placement: store.Reader.LocateTask has the rule) and relays the
// answer of that worker's process to GET /api/local/tasks/{id}/log, the
// same read served only from the local disk and never passed on, so a
// request makes one hop at most, whatever the processes believe. The relay
// keeps the forwarding rules of writes (forward.go): https with
// ForwardHTTPS, and the admin credentials only where the reads need them
// and only over https or to loopback.
//
// A followed log is a long answer: it is flushed as it grows, each write
// gets its own deadline (the server's WriteTimeout is for short answers),
// and it ends when the task has ended and its output is sent, when the
// client goes, after LogStreamMax, or when StreamsDone is closed (the
// server shutting down; Shutdown would wait for it otherwise).

// Defaults of the log settings of Config.
const (
	// DefaultLogStreamMax bounds one log answer, followed or not.
	DefaultLogStreamMax = time.Hour
	maxLogStreamMax     = 24 * time.Hour
	// logWriteTimeout bounds each write of a log answer to the client.
	logWriteTimeout = 30 * time.Second
	// maxLogError caps what is relayed of another process's error answer.
	maxLogError = 64 << 10
)

// HeaderWorker names, on a relayed log, the worker whose process served it.
const HeaderWorker = "X-Hasched-Worker"

// ErrLogsUnsupported: this process's executor keeps no task output that
// hasched can read (Mesos tasks' output is in the agents' sandboxes). The
// API answers 501.
var ErrLogsUnsupported = errors.New("task logs are not served for this executor")

// LogQuery is what a log read asks for.
type LogQuery struct {
	// Stream is model.StreamStdout or model.StreamStderr.
	Stream string
	// Tail, if positive, starts at the last Tail lines (at most
	// model.MaxLogTailLines).
	Tail int
	// Follow reads on as the task writes, until it has ended.
	Follow bool
	// Worker, if set, names the worker whose process to ask, in place of
	// the one the store's placement names: for a task that ended longer
	// ago than placements are kept (its files outlive its placement).
	Worker string
}

// TaskLogs is what the log routes read through.
type TaskLogs interface {
	// OpenLocal opens a task's log in this process's own work directory;
	// model.ErrNotFound if the task is not there, ErrLogsUnsupported if
	// this process keeps no logs. ctx bounds the reads of the answer.
	OpenLocal(ctx context.Context, taskID string, q LogQuery) (io.ReadCloser, error)
	// Locate names the worker that ran a task and the API address of its
	// process (empty while it is not registered); model.ErrNotFound if no
	// worker is known to have run it.
	Locate(ctx context.Context, taskID string) (model.TaskLocation, error)
}

// parseLogQuery reads and bounds a log request's query.
func parseLogQuery(v url.Values) (LogQuery, error) {
	q := LogQuery{Stream: v.Get("stream")}
	switch q.Stream {
	case "":
		q.Stream = model.StreamStdout
	case model.StreamStdout, model.StreamStderr:
	default:
		return q, &badRequestError{field: "stream", err: fmt.Errorf("stream %q: want %s or %s", q.Stream, model.StreamStdout, model.StreamStderr)}
	}
	switch f := v.Get("follow"); f {
	case "", "0", "false":
	case "1", "true":
		q.Follow = true
	default:
		return q, &badRequestError{field: "follow", err: fmt.Errorf("follow %q: want 1 or 0", f)}
	}
	if wn := v.Get("worker"); wn != "" {
		probe := model.Worker{Name: wn, Incarnation: "0000000000000000", CPUs: 1, MemoryMB: 1}
		if err := probe.Check(); err != nil {
			return q, &badRequestError{field: "worker", err: fmt.Errorf("worker %q is not a worker name", wn)}
		}
		q.Worker = wn
	}
	if t := v.Get("tail"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 || n > model.MaxLogTailLines {
			return q, &badRequestError{field: "tail", err: fmt.Errorf("tail %q: want 0 to %d lines", t, model.MaxLogTailLines)}
		}
		q.Tail = n
	}
	return q, nil
}

func (q LogQuery) encode() string {
	v := url.Values{"stream": {q.Stream}}
	if q.Tail > 0 {
		v.Set("tail", strconv.Itoa(q.Tail))
	}
	if q.Follow {
		v.Set("follow", "1")
	}
	return v.Encode()
}

// taskLog serves a task's log: local serves GET /api/local/tasks/{id}/log,
// which never leaves this process's disk.
func (s *server) taskLog(local bool) func(http.ResponseWriter, *call) {
	return func(w http.ResponseWriter, c *call) {
		r := c.r
		id := c.params["id"]
		if err := model.CheckTaskID(id); err != nil {
			s.writeError(w, r, &badRequestError{field: "id", err: err})
			return
		}
		q, err := parseLogQuery(r.URL.Query())
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if s.cfg.Logs == nil {
			s.writeUnsupported(w, ErrLogsUnsupported)
			return
		}
		ctx, cancel := context.WithCancel(c.ctx)
		defer cancel()
		if s.cfg.StreamsDone != nil {
			// Ends with the request (cancel is deferred).
			go func() {
				select {
				case <-s.cfg.StreamsDone:
					cancel()
				case <-ctx.Done():
				}
			}()
		}
		rc, err := s.cfg.Logs.OpenLocal(ctx, id, q)
		switch {
		case err == nil:
			defer rc.Close()
			s.streamLog(w, rc, q.Follow, r.Method == http.MethodHead)
			return
		case errors.Is(err, ErrLogsUnsupported):
			s.writeUnsupported(w, err)
			return
		case !errors.Is(err, model.ErrNotFound):
			s.writeError(w, r, err)
			return
		case local || r.Header.Get(HeaderForwarded) != "":
			s.writeError(w, r, fmt.Errorf("%w: this process's work directory has no log of task %q (it ran elsewhere, or its files were removed after their retention)", model.ErrNotFound, id))
			return
		}
		var loc model.TaskLocation
		if q.Worker != "" {
			loc, err = s.workerLocation(ctx, id, q.Worker)
		} else {
			loc, err = s.cfg.Logs.Locate(ctx, id)
		}
		if errors.Is(err, ErrLogsUnsupported) {
			s.writeUnsupported(w, err)
			return
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if loc.API == "" && q.Worker != "" {
			s.writeError(w, r, &unavailableError{msg: fmt.Sprintf("no worker named %q is registered now", q.Worker)})
			return
		}
		if loc.API == "" {
			s.writeError(w, r, &unavailableError{msg: fmt.Sprintf("task %q ran on worker %q, which is not registered now: its log can be read once it is back", id, loc.Worker)})
			return
		}
		if st, err := s.svc.Status(ctx); err == nil && st.Self == loc.API {
			s.writeError(w, r, fmt.Errorf("%w: task %q ran on this process's worker %q, whose work directory no longer has its log (removed after its retention)", model.ErrNotFound, id, loc.Worker))
			return
		}
		s.relayLog(ctx, w, c, loc, id, q)
	}
}

// workerLocation is the API address of the newest live registration of
// the worker named, for ?worker=.
func (s *server) workerLocation(ctx context.Context, id, name string) (model.TaskLocation, error) {
	ws, err := s.svc.Workers(ctx)
	if err != nil {
		return model.TaskLocation{}, err
	}
	loc := model.TaskLocation{TaskID: id, Worker: name}
	var started time.Time
	for _, w := range ws {
		if w.Name == name && (loc.API == "" || w.Started.After(started)) {
			loc.API, loc.Host, started = w.API, w.Host, w.Started
		}
	}
	return loc, nil
}

func (s *server) writeUnsupported(w http.ResponseWriter, err error) {
	writeJSON(w, http.StatusNotImplemented, ErrorBody{Error: err.Error()})
}

// relayLog asks the process of the worker that ran the task for its log
// and relays the answer as it comes.
func (s *server) relayLog(ctx context.Context, w http.ResponseWriter, c *call, loc model.TaskLocation, id string, q LogQuery) {
	r := c.r
	base := leaderURL(loc.API, s.cfg.ForwardHTTPS)
	// The worker's process guards its reads as this one does.
	creds := s.cfg.AuthReads
	if creds {
		if err := s.checkForwardTarget(base); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/local/tasks/"+url.PathEscape(id)+"/log?"+q.encode(), nil)
	if err != nil {
		s.writeError(w, r, &unavailableError{msg: fmt.Sprintf("worker %q's address %q is not usable: %v", loc.Worker, loc.API, err)})
		return
	}
	if ua := r.Header.Get("User-Agent"); ua != "" {
		req.Header.Set("User-Agent", ua)
	}
	if creds {
		req.SetBasicAuth(s.cfg.AuthUser, s.cfg.AuthPassword)
	}
	req.Header.Set(HeaderForwarded, "1")
	req.Header.Set("X-Forwarded-For", clientIP(r))
	c.forwardedTo = loc.API
	// The forwarding client's overall timeout would cut a long log; the
	// context bounds it instead (and its transport the wait for headers).
	hc := *s.forward
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		msg := redactText(err.Error())
		s.log.Warn("reading a task's log from its worker failed", "task", id, "worker", loc.Worker, "api", loc.API, "error", msg)
		s.writeError(w, r, &unavailableError{msg: fmt.Sprintf("task %q ran on worker %q, whose process at %s did not answer: %s", id, loc.Worker, loc.API, msg)})
		return
	}
	defer resp.Body.Close()
	w.Header().Set(HeaderWorker, loc.Worker)
	if resp.StatusCode != http.StatusOK {
		s.relay(w, resp, loc.API, maxLogError)
		return
	}
	s.streamLog(w, resp.Body, q.Follow, r.Method == http.MethodHead)
}

// streamLog writes a log answer from src, flushing what a follower reads
// as it comes.
func (s *server) streamLog(w http.ResponseWriter, src io.Reader, follow, head bool) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if head {
		return // HEAD: whether the log is there, not its bytes
	}
	// Headers first, so that a follower knows the stream is open.
	if follow {
		_ = rc.SetWriteDeadline(time.Now().Add(logWriteTimeout))
		_ = rc.Flush()
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(logWriteTimeout))
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // the client went away
			}
			if follow {
				_ = rc.Flush()
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, context.Canceled) {
				s.log.Debug("a task log's stream ended early", "error", err)
			}
			return
		}
	}
}
