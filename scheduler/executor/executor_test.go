package executor

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

func TestStatusQueueDeliversEverythingInOrderToASlowReader(t *testing.T) {
	q := NewStatusQueue()
	out := make(chan Status, 4)
	done := make(chan struct{})
	drained := make(chan struct{})
	go func() { q.Drain(out, done); close(drained) }()
	const n = 1000
	for i := range n {
		q.Push(Status{TaskID: fmt.Sprint(i)}) // never blocks, whatever the reader does
	}
	for i := range n {
		select {
		case s := <-out:
			if s.TaskID != fmt.Sprint(i) {
				t.Fatalf("status %d is for task %s: out of order", i, s.TaskID)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("status %d never arrived", i)
		}
	}
	close(done)
	<-drained
	if _, open := <-out; open {
		t.Fatal("Drain left the channel open after done")
	}
}

func TestTaskVariablesCarryTheShardingContext(t *testing.T) {
	task := Task{ID: "j@-@1000@-@1@-@2", Job: "j", App: "a", Shard: 1, ShardingTotalCount: 3,
		ShardParameter: "b", JobParameter: "p", FireTime: time.UnixMilli(1000), Attempt: 2, Command: "echo"}
	env := map[string]string{}
	for _, v := range TaskVariables(task) {
		env[v.Name] = v.Value
	}
	for k, want := range map[string]string{
		"HASCHED_TASK_ID": task.ID, "HASCHED_SHARDING_ITEM": "1", "HASCHED_SHARDING_TOTAL_COUNT": "3",
		"HASCHED_FIRE_TIME": "1970-01-01T00:00:01Z", "HASCHED_FIRE_TIME_UNIX_MS": "1000", "HASCHED_COMMAND": "echo",
	} {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}
	var sc map[string]any
	if err := json.Unmarshal([]byte(env["HASCHED_SHARDING_CONTEXT"]), &sc); err != nil {
		t.Fatal(err)
	}
	if sc["shardingParameter"] != "b" || sc["jobParameter"] != "p" || sc["attempt"] != float64(2) {
		t.Fatalf("sharding context %v", sc)
	}
}
