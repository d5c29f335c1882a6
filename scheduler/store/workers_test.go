package store_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
	"github.com/hasched/hasched/scheduler/store"
)

// Workers shows live registrations with their placements that have not
// ended; placements of gone incarnations, ended ones and undecodable nodes
// are left out.
func TestWorkersListsLiveRegistrationsAndTheirOpenPlacements(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	c, err := st.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	create := func(path string, value []byte, opts ...coord.CreateOption) {
		t.Helper()
		if _, err := c.Create(ctx, path, value, opts...); err != nil {
			t.Fatalf("create %s: %v", path, err)
		}
	}
	a := model.Worker{Name: "a", Incarnation: "000000000000000a", Host: "ha", CPUs: 4, MemoryMB: 4096}
	b := model.Worker{Name: "b", Incarnation: "000000000000000b", Host: "hb", CPUs: 2, MemoryMB: 2048, Draining: true}
	create(store.WorkerPath(a.ID()), mustJSON(a), coord.Ephemeral())
	create(store.WorkerPath(b.ID()), mustJSON(b), coord.Ephemeral())
	create(store.WorkerPath("junk~00000000000000ff"), []byte("{not json"), coord.Ephemeral())
	bad := model.Worker{Name: "bad", Incarnation: "00000000000000bb", Host: "hx", CPUs: 0, MemoryMB: 1}
	create(store.WorkerPath(bad.ID()), mustJSON(bad), coord.Ephemeral()) // no capacity: invalid
	place := func(worker, inc, id string, state executor.State) {
		p := model.Placement{Task: executor.Task{ID: id, Job: "j", CPUs: 1, MemoryMB: 100}, Worker: worker, Incarnation: inc, State: state}
		create(store.PlacementPath(worker, id), mustJSON(p))
	}
	place("a", a.Incarnation, "t1", executor.StateRunning)
	place("a", a.Incarnation, "t2", executor.StateStaging)
	place("a", a.Incarnation, "t3", executor.StateFinished)
	place("a", "00000000000000aa", "t4", executor.StateRunning) // an earlier incarnation's
	create(store.PlacementPath("a", "t5"), []byte("garbage"))

	ws, err := store.NewReader(c).Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 2 || ws[0].Name != "a" || ws[1].Name != "b" {
		t.Fatalf("Workers = %+v, want a and b", ws)
	}
	if got := ws[0]; len(got.Tasks) != 2 || got.UsedCPUs != 2 || got.UsedMemoryMB != 200 || got.Tasks[0].TaskID != "t1" || got.Tasks[1].TaskID != "t2" {
		t.Fatalf("worker a = %+v, want t1 and t2 using 2 cpus, 200 MB", got)
	}
	if got := ws[1]; !got.Draining || len(got.Tasks) != 0 || got.Tasks == nil {
		t.Fatalf("worker b = %+v, want draining, no tasks (an empty list)", got)
	}
}

// A report whose message is a task's whole stderr still fits a batch: the
// message is cut, on a character boundary.
func TestEncodeReportBoundsTheMessage(t *testing.T) {
	long := "x" + strings.Repeat("é", store.MaxReportMessage) // the cut falls inside an é
	b := store.EncodeReport(model.Report{Incarnation: "0123456789abcdef", Status: executor.Status{TaskID: "t", State: executor.StateFailed, Message: long}})
	var got model.Report
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Message) > store.MaxReportMessage+len("…") || !utf8.ValidString(got.Message) || !strings.HasSuffix(got.Message, "…") {
		t.Fatalf("message of %d bytes (valid UTF-8 %v), want at most %d and cut", len(got.Message), utf8.ValidString(got.Message), store.MaxReportMessage)
	}
	short := store.EncodeReport(model.Report{Status: executor.Status{TaskID: "t", Message: "exit 3"}})
	if err := json.Unmarshal(short, &got); err != nil || got.Message != "exit 3" {
		t.Fatalf("a short message = %q, %v", got.Message, err)
	}
}

// A placement carries its task's Timeout to the worker, and a TIMED_OUT
// end comes back in a report and a placement unchanged: a worker's local
// executor enforces the Timeout only if it gets it.
func TestPlacementAndReportKeepTimeoutAndTimedOut(t *testing.T) {
	p := model.Placement{
		Task:   executor.Task{ID: "t", Job: "j", Command: "sleep 9", Timeout: 90 * time.Second},
		Worker: "a", Incarnation: "0123456789abcdef", Token: 7,
		State: executor.StateTimedOut, Message: "timed out after 1m30s",
	}
	got, err := store.DecodePlacement(coord.Node{Path: store.PlacementsPath("a") + "/t", Value: store.EncodePlacement(p)})
	if err != nil {
		t.Fatal(err)
	}
	if got.Task.Timeout != p.Task.Timeout || got.State != executor.StateTimedOut || got.Message != p.Message {
		t.Fatalf("placement round trip: timeout %v, state %s, message %q; want %v, TIMED_OUT, %q",
			got.Task.Timeout, got.State, got.Message, p.Task.Timeout, p.Message)
	}
	var rep model.Report
	b := store.EncodeReport(model.Report{Incarnation: p.Incarnation, Status: executor.Status{TaskID: "t", State: executor.StateTimedOut, Message: p.Message}})
	if err := json.Unmarshal(b, &rep); err != nil || rep.State != executor.StateTimedOut || rep.Message != p.Message {
		t.Fatalf("report round trip: %+v, %v", rep, err)
	}
}
