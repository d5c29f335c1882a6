package executor

import "context"

// A start check is a caller's last word on whether a task it launches may
// begin to run. A worker may run tasks only while its session surely
// lives; a worker frozen (SIGSTOP, docker pause) in the middle of a Launch
// resumes past its session's end, and its safety clock, also frozen,
// trips only once the runtime gets to it. An executor that can withhold a
// task's start (the local executor's go-ahead) calls the check right
// before it, so that what such a Launch started before the freeze does not
// run after it.

type startCheckKey struct{}

// WithStartCheck returns ctx carrying check for the Launch calls made with
// it. check returns an error when tasks may no longer start; it must be
// cheap and must not block.
func WithStartCheck(ctx context.Context, check func() error) context.Context {
	return context.WithValue(ctx, startCheckKey{}, check)
}

// CheckStart runs ctx's start check, if it carries one: nil means the task
// may start.
func CheckStart(ctx context.Context) error {
	if check, ok := ctx.Value(startCheckKey{}).(func() error); ok && check != nil {
		return check()
	}
	return nil
}
