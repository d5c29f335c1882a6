package coord

import (
	"context"
	"errors"
)

// ErrNotMirrored says a Mirror was asked for a path outside the subtree it
// mirrors.
var ErrNotMirrored = errors.New("coord: path is outside the mirrored subtree")

// Reads is the read half of a Coordinator: what a Mirror answers from
// memory. A Coordinator is one, so code that only reads can take either.
type Reads interface {
	Get(ctx context.Context, path string) (Node, error)
	Children(ctx context.Context, path string) ([]string, error)
	List(ctx context.Context, path string) ([]Node, error)
}

// Mirror is a copy, in this process's memory, of every node under one path
// of the store, kept current by the backend's watches. It exists so that a
// standby can take over without reading the whole state from the servers:
// the reads it makes after Sync are answered from memory.
//
// Its reads answer as the Coordinator's would, with the same errors
// (ErrNotFound, ErrInvalidPath) and the same Version of each node, plus
// ErrNotMirrored for a path outside the mirrored subtree. They are as fresh
// as the watch events received so far, which may lag the servers: a caller
// that must see every acknowledged write calls Sync first. The values they
// return may be the mirror's own memory, shared with other callers: they
// must not be modified (copying them would cost a List of 100,000 children
// ten times as much).
//
// A Mirror belongs to the session it was opened on. When the session ends
// or the Mirror is closed, every call fails with ErrSessionLost or
// ErrClosed, and Done is closed.
type Mirror interface {
	Reads
	// Sync returns once the mirror holds every change the servers had
	// applied when Sync was called (and the first full read of the subtree,
	// on a new Mirror). etcd: the store's revision at the call, then watch
	// progress up to it. ZooKeeper: a sync through the session's
	// connection; every watch event the servers sent before its answer, and
	// the reads those events prompted, are applied before Sync returns.
	Sync(ctx context.Context) error
	// Done is closed when the Mirror stops following the store: its session
	// ended, or Close.
	Done() <-chan struct{}
	// Close stops the Mirror's watches and frees its memory. Idempotent.
	Close() error
}

// Mirrorer is a Coordinator that can mirror a subtree. Both backends are;
// a caller that gets a Coordinator without it reads the servers instead.
type Mirrorer interface {
	// Mirror starts mirroring path and everything below it (the path need
	// not exist yet). It returns at once; the first full read runs in the
	// background, and Sync waits for it. ctx bounds only the call, not the
	// Mirror's life, which ends with Close or the session.
	Mirror(ctx context.Context, path string) (Mirror, error)
}
