package model

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/hasched/hasched/coord"
)

// TaskIDSeparator separates the parts of a task ID, as in Elastic-Job-Cloud.
// Job names must not contain it.
const TaskIDSeparator = "@-@"

// MaxNameLength is the longest job or app name, in bytes.
const MaxNameLength = 128

// TaskID is the deterministic ID of one shard of one run of a job:
// "{job}@-@{fire time in unix ms}@-@{shard}@-@{attempt}". The same run
// always has the same ID, so a new leader recognises what its predecessor
// launched.
func TaskID(job string, fire time.Time, shard, attempt int) string {
	return job + TaskIDSeparator + strconv.FormatInt(fire.UnixMilli(), 10) +
		TaskIDSeparator + strconv.Itoa(shard) + TaskIDSeparator + strconv.Itoa(attempt)
}

// TaskRef is a task ID taken apart.
type TaskRef struct {
	Job      string
	FireTime time.Time // UTC, millisecond precision
	Shard    int
	Attempt  int
}

// ID puts the reference back together.
func (r TaskRef) ID() string { return TaskID(r.Job, r.FireTime, r.Shard, r.Attempt) }

// ParseTaskID takes a task ID made by TaskID apart.
func ParseTaskID(id string) (TaskRef, error) {
	// Taken apart from the right: a job name cannot contain the separator
	// but may end with a piece of it ("a@-").
	parts := make([]string, 4)
	rest := id
	for i := 3; i > 0; i-- {
		j := strings.LastIndex(rest, TaskIDSeparator)
		if j < 0 {
			return TaskRef{}, fmt.Errorf("%w: task id %q: want job@-@fireMillis@-@shard@-@attempt", ErrInvalid, id)
		}
		parts[i], rest = rest[j+len(TaskIDSeparator):], rest[:j]
	}
	parts[0] = rest
	if rest == "" || strings.Contains(rest, TaskIDSeparator) {
		return TaskRef{}, fmt.Errorf("%w: task id %q: want job@-@fireMillis@-@shard@-@attempt", ErrInvalid, id)
	}
	ms, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return TaskRef{}, fmt.Errorf("%w: task id %q: fire time: %v", ErrInvalid, id, err)
	}
	shard, err := strconv.Atoi(parts[2])
	if err != nil || shard < 0 {
		return TaskRef{}, fmt.Errorf("%w: task id %q: bad shard %q", ErrInvalid, id, parts[2])
	}
	attempt, err := strconv.Atoi(parts[3])
	if err != nil || attempt < 0 {
		return TaskRef{}, fmt.Errorf("%w: task id %q: bad attempt %q", ErrInvalid, id, parts[3])
	}
	return TaskRef{Job: parts[0], FireTime: time.UnixMilli(ms).UTC(), Shard: shard, Attempt: attempt}, nil
}

// ValidateName checks a job or app name: a valid coordinator node name
// without '/' or control characters, at most MaxNameLength bytes; job names
// also must not contain TaskIDSeparator.
func ValidateName(field, name string, job bool) error {
	switch {
	case name == "":
		return &ValidationError{Field: field, Reason: "is empty"}
	case len(name) > MaxNameLength:
		return &ValidationError{Field: field, Reason: fmt.Sprintf("is %d bytes long, at most %d", len(name), MaxNameLength)}
	case strings.Contains(name, "/"):
		return &ValidationError{Field: field, Reason: fmt.Sprintf("%q contains /", name)}
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return &ValidationError{Field: field, Reason: fmt.Sprintf("%q contains a control character", name)}
	case job && strings.Contains(name, TaskIDSeparator):
		return &ValidationError{Field: field, Reason: fmt.Sprintf("%q contains %q, the task id separator", name, TaskIDSeparator)}
	}
	if err := coord.ValidateName(name); err != nil {
		return &ValidationError{Field: field, Reason: err.Error()}
	}
	return nil
}
