package executor

import (
	"encoding/json"
	"strconv"
	"time"
)

// shardingContext is what a task gets as $1 and HASCHED_SHARDING_CONTEXT.
type shardingContext struct {
	JobName            string `json:"jobName"`
	TaskID             string `json:"taskId"`
	ShardingItem       int    `json:"shardingItem"`
	ShardingTotalCount int    `json:"shardingTotalCount"`
	ShardingParameter  string `json:"shardingParameter"`
	JobParameter       string `json:"jobParameter"`
	FireTime           string `json:"fireTime"`
	Attempt            int    `json:"attempt"`
}

// EnvVar is one environment variable of a task.
type EnvVar struct{ Name, Value string }

// TaskVariables are the HASCHED_* variables every executor gives a task, in
// a fixed order: its identity, its sharding context (also as one JSON
// object in HASCHED_SHARDING_CONTEXT, which executors pass as $1) and the
// command (HASCHED_COMMAND, for the executors' wrappers). An executor adds
// HASCHED_TASK_DIR, the task's working directory, itself.
func TaskVariables(t Task) []EnvVar {
	fire := t.FireTime.UTC().Format(time.RFC3339Nano)
	// A struct of strings and ints always marshals.
	sc, _ := json.Marshal(shardingContext{
		JobName: t.Job, TaskID: t.ID,
		ShardingItem: t.Shard, ShardingTotalCount: t.ShardingTotalCount,
		ShardingParameter: t.ShardParameter, JobParameter: t.JobParameter,
		FireTime: fire, Attempt: t.Attempt,
	})
	return []EnvVar{
		{"HASCHED_TASK_ID", t.ID},
		{"HASCHED_JOB_NAME", t.Job},
		{"HASCHED_APP_NAME", t.App},
		{"HASCHED_SHARDING_ITEM", strconv.Itoa(t.Shard)},
		{"HASCHED_SHARDING_TOTAL_COUNT", strconv.Itoa(t.ShardingTotalCount)},
		{"HASCHED_SHARDING_PARAMETER", t.ShardParameter},
		{"HASCHED_JOB_PARAMETER", t.JobParameter},
		{"HASCHED_FIRE_TIME", fire},
		{"HASCHED_FIRE_TIME_UNIX_MS", strconv.FormatInt(t.FireTime.UnixMilli(), 10)},
		{"HASCHED_ATTEMPT", strconv.Itoa(t.Attempt)},
		{"HASCHED_SHARDING_CONTEXT", string(sc)},
		{"HASCHED_COMMAND", t.Command},
	}
}
