package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hasched/hasched/coord"
)

// mirroredRoots are the subtrees a standby keeps a Mirror of: everything a
// new term's load reads (configurations, disabled flags, the ready,
// running and failover queues) and nothing else (the run history, the
// workers' outboxes and the placements are read or written elsewhere and
// would only cost memory).
var mirroredRoots = []string{"/config", "/state"}

// ErrNoMirror says a session cannot mirror the state (its backend is not a
// coord.Mirrorer); the caller reads the servers instead.
var ErrNoMirror = errors.New("store: the session cannot mirror the state")

// Mirrors is a standby's copy of the state a new term loads, kept by the
// watches of one session. After Sync its Reader answers a term's reads
// from memory, as the servers would have answered them when Sync was
// called.
type Mirrors struct {
	ms []coord.Mirror
}

// OpenMirrors starts mirroring the state through c. It returns at once:
// the first full read runs in the background and Sync waits for it.
// ErrNoMirror if c's backend cannot mirror.
func OpenMirrors(ctx context.Context, c coord.Coordinator) (*Mirrors, error) {
	mr, ok := c.(coord.Mirrorer)
	if !ok {
		return nil, ErrNoMirror
	}
	m := &Mirrors{}
	for _, root := range mirroredRoots {
		one, err := mr.Mirror(ctx, root)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("mirror %s: %w", root, err)
		}
		m.ms = append(m.ms, one)
	}
	return m, nil
}

// Sync waits until every mirror holds what the servers had when Sync was
// called.
func (m *Mirrors) Sync(ctx context.Context) error {
	for i, one := range m.ms {
		if err := one.Sync(ctx); err != nil {
			return unavailable(fmt.Errorf("sync the mirror of %s: %w", mirroredRoots[i], err))
		}
	}
	return nil
}

// Broken reports whether a mirror has stopped following the store (its
// session ended): it will never be current again.
func (m *Mirrors) Broken() bool {
	for _, one := range m.ms {
		select {
		case <-one.Done():
			return true
		default:
		}
	}
	return false
}

// Reader reads from the mirrors. Only the state under the mirrored roots
// can be read; anything else fails with coord.ErrNotMirrored.
func (m *Mirrors) Reader() Reader { return Reader{c: mirrorSource{m}} }

// Close stops every mirror. Idempotent.
func (m *Mirrors) Close() {
	for _, one := range m.ms {
		_ = one.Close()
	}
}

// mirrorSource routes each read to the mirror of the root it is under.
type mirrorSource struct{ m *Mirrors }

func (s mirrorSource) of(path string) (coord.Mirror, error) {
	for i, root := range mirroredRoots {
		if path == root || strings.HasPrefix(path, root+"/") {
			return s.m.ms[i], nil
		}
	}
	return nil, fmt.Errorf("%s: %w", path, coord.ErrNotMirrored)
}

func (s mirrorSource) Get(ctx context.Context, path string) (coord.Node, error) {
	one, err := s.of(path)
	if err != nil {
		return coord.Node{}, err
	}
	return one.Get(ctx, path)
}

func (s mirrorSource) Children(ctx context.Context, path string) ([]string, error) {
	one, err := s.of(path)
	if err != nil {
		return nil, err
	}
	return one.Children(ctx, path)
}

func (s mirrorSource) List(ctx context.Context, path string) ([]coord.Node, error) {
	one, err := s.of(path)
	if err != nil {
		return nil, err
	}
	return one.List(ctx, path)
}

// Leader is not mirrored: the election lives outside the mirrored roots.
func (s mirrorSource) Leader(context.Context, string) ([]byte, error) {
	return nil, fmt.Errorf("%s: %w", ElectionPath, coord.ErrNotMirrored)
}
