package main

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/hasched/hasched/scheduler/api"
	"github.com/hasched/hasched/scheduler/executor/local"
	"github.com/hasched/hasched/scheduler/model"
)

// taskLogs is where serve's API reads task logs (api.TaskLogs): this
// process's work directory, and for the cluster executor the store's
// record of which worker ran a task.
type taskLogs struct {
	executor string // cluster, local or mesos
	// workDir is this process's: its worker's, or its local executor's.
	// With the cluster executor and no worker here it holds no tasks.
	workDir   string
	hasWorker bool
	locate    func(ctx context.Context, taskID string) (model.TaskLocation, error)
}

// errMesosLogs answers 501 for the Mesos executor.
var errMesosLogs = fmt.Errorf("%w: tasks of the Mesos executor write their output into the Mesos agents' sandboxes (the agent's /files API or the Mesos UI show it)", api.ErrLogsUnsupported)

func newTaskLogs(cfg serveConfig, hasWorker bool, locate func(context.Context, string) (model.TaskLocation, error)) taskLogs {
	return taskLogs{executor: cfg.executor, workDir: cfg.workDir, hasWorker: hasWorker, locate: locate}
}

func (l taskLogs) OpenLocal(ctx context.Context, taskID string, q api.LogQuery) (io.ReadCloser, error) {
	switch {
	case l.executor == "mesos":
		return nil, errMesosLogs
	case l.executor == "cluster" && !l.hasWorker:
		return nil, local.ErrNoLog
	}
	return local.OpenLog(ctx, l.workDir, taskID, local.LogOptions{Stream: q.Stream, TailLines: q.Tail, Follow: q.Follow})
}

func (l taskLogs) Locate(ctx context.Context, taskID string) (model.TaskLocation, error) {
	switch l.executor {
	case "mesos":
		return model.TaskLocation{}, errMesosLogs
	case "local":
		// The local executor records no placement: a task ran on the host
		// of the process that led when it was launched.
		return model.TaskLocation{}, fmt.Errorf("%w: the local executor keeps a task's output on the host whose process led when it ran, and this host's work directory has none of task %q: ask a process on that host", model.ErrNotFound, taskID)
	}
	return l.locate(ctx, taskID)
}

// streamsEnd is closed when the HTTP server shuts down, ending the log
// streams in flight (http.Server.Shutdown would wait for them).
type streamsEnd struct {
	once sync.Once
	ch   chan struct{}
}

func newStreamsEnd() *streamsEnd { return &streamsEnd{ch: make(chan struct{})} }

func (s *streamsEnd) close() { s.once.Do(func() { close(s.ch) }) }
