package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hasched/hasched/coord"
)

var (
	// errRegistrationGone: the incarnation's registration is gone or its
	// session ended. Nothing more may be written or run for it.
	errRegistrationGone = errors.New("worker: registration gone")
	// errUnknownOutcome: a write may or may not have been made (a timeout,
	// a broken connection). The fence has re-read its registration; the
	// caller retries, and its write must be idempotent (a report's create
	// then fails ErrExists, a claim finds the placement bound already).
	errUnknownOutcome = errors.New("worker: outcome of the write unknown")
)

// fence makes every write of one incarnation conditional on its
// registration: each Apply starts with a Set of the registration node at
// the version last written, so that it fails, writing nothing, once the
// session is gone on the server (the ephemeral node is deleted) — an
// expired incarnation never reports, claims or deregisters anything. Only
// the worker writes its registration, so a changed version can only be its
// own write whose answer was lost; writes are serialised by mu, which keeps
// the version known.
type fence struct {
	sess    coord.Coordinator
	path    string
	timeout time.Duration

	mu    sync.Mutex
	val   []byte
	ver   coord.Version
	stale bool // the last write's outcome is unknown: re-read ver first
}

// apply writes ops behind the fence, and newVal as the registration if it
// is not nil. Errors: errRegistrationGone, errUnknownOutcome, an
// *coord.OpError of one of ops (nothing written), or ctx's.
func (f *fence) apply(ctx context.Context, newVal []byte, ops ...coord.Op) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stale {
		if err := f.resyncLocked(ctx); err != nil {
			return err
		}
	}
	val := f.val
	if newVal != nil {
		val = newVal
	}
	all := append([]coord.Op{coord.SetOp(f.path, val, f.ver)}, ops...)
	actx, cancel := context.WithTimeout(ctx, f.timeout)
	res, err := f.sess.Apply(actx, all...)
	cancel()
	if err == nil {
		f.val, f.ver = val, res[0].Version
		return nil
	}
	var oe *coord.OpError
	switch {
	case errors.As(err, &oe) && oe.Index == 0:
		return fmt.Errorf("%w: %w", errRegistrationGone, err)
	case errors.As(err, &oe):
		// Shift the index back to the caller's ops.
		return &coord.OpError{Index: oe.Index - 1, Op: oe.Op, Err: oe.Err}
	case errors.Is(err, coord.ErrSessionLost), errors.Is(err, coord.ErrClosed):
		return fmt.Errorf("%w: %w", errRegistrationGone, err)
	case ctx.Err() != nil:
		f.stale = true
		return ctx.Err()
	}
	f.stale = true
	if rerr := f.resyncLocked(ctx); errors.Is(rerr, errRegistrationGone) {
		return rerr
	}
	return fmt.Errorf("%w: %w", errUnknownOutcome, err)
}

// resyncLocked re-reads the registration after a write of unknown outcome:
// its version now is the worker's latest write, whichever that was.
func (f *fence) resyncLocked(ctx context.Context) error {
	gctx, cancel := context.WithTimeout(ctx, f.timeout)
	n, err := f.sess.Get(gctx, f.path)
	cancel()
	switch {
	case err == nil:
		f.val, f.ver, f.stale = n.Value, n.Version, false
		return nil
	case errors.Is(err, coord.ErrNotFound), errors.Is(err, coord.ErrSessionLost), errors.Is(err, coord.ErrClosed):
		return fmt.Errorf("%w: %w", errRegistrationGone, err)
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return fmt.Errorf("%w: re-read registration: %w", errUnknownOutcome, err)
}

// value returns the registration as last written.
func (f *fence) value() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.val
}
