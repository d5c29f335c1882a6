package scheduler

import (
	"context"
	"errors"
	"fmt"

	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/store"
)

// executorState is the executor.StateStore of one term: reads from the
// term's session, writes fenced by its leadership.
type executorState struct{ st *store.Writer }

func (s executorState) Load(ctx context.Context, key string) ([]byte, error) {
	v, err := s.st.ExecutorState(ctx, key)
	if errors.Is(err, store.ErrNoState) {
		return nil, fmt.Errorf("%w: %w", executor.ErrNoState, err)
	}
	return v, err
}

func (s executorState) Store(ctx context.Context, key string, value []byte) error {
	return s.st.StoreExecutorState(ctx, key, value)
}
