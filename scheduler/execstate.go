package scheduler

import (
	"context"
	"errors"
	"fmt"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/executor"
)

// executorStateRoot holds the executors' own state: /ha/{key}, so the Mesos
// framework id lives at /ha/framework_id as Elastic-Job-Cloud keeps it.
const executorStateRoot = "/ha"

// executorState is the executor.StateStore of one term: reads from the
// term's session, writes fenced by its leadership.
type executorState struct{ t *term }

func executorStatePath(key string) (string, error) {
	if err := coord.ValidateName(key); err != nil {
		return "", fmt.Errorf("executor state key %q: %w", key, err)
	}
	if key == "election" {
		return "", fmt.Errorf("executor state key %q is the election's", key)
	}
	return executorStateRoot + "/" + key, nil
}

func (s executorState) Load(ctx context.Context, key string) ([]byte, error) {
	p, err := executorStatePath(key)
	if err != nil {
		return nil, err
	}
	n, err := s.t.c.Get(ctx, p)
	if errors.Is(err, coord.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", p, executor.ErrNoState)
	}
	if err != nil {
		return nil, err
	}
	return n.Value, nil
}

func (s executorState) Store(ctx context.Context, key string, value []byte) error {
	p, err := executorStatePath(key)
	if err != nil {
		return err
	}
	_, err = s.t.w.Set(ctx, p, value, coord.AnyVersion)
	if errors.Is(err, coord.ErrNotFound) {
		_, err = s.t.w.Create(ctx, p, value)
	}
	return err
}
