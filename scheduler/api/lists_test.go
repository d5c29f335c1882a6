package api

import (
	"strings"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/api/apitest"
	"github.com/hasched/hasched/scheduler/model"
)

func TestQuarantineIsServedAsJSON(t *testing.T) {
	svc := apitest.NewService(model.Status{Self: "127.0.0.1:8899"})
	h := newHandler(t, svc, nil)
	if r := do(t, h, "GET", "/api/quarantine", ""); r.code != 200 || strings.TrimSpace(r.body) != "[]" {
		t.Fatalf("empty quarantine = %d %q, want 200 []", r.code, r.body)
	}
	seen := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	svc.SetQuarantined([]model.QuarantinedConfig{{Kind: model.KindJob, Name: "huge", Error: "invalid shardingTotalCount: 1099511627776 is above 1000", SeenAt: seen}})
	got := decode[[]model.QuarantinedConfig](t, do(t, h, "GET", "/api/quarantine", ""))
	if len(got) != 1 || got[0].Kind != model.KindJob || got[0].Name != "huge" || !got[0].SeenAt.Equal(seen) || got[0].Error == "" {
		t.Fatalf("quarantine = %+v", got)
	}
}

func TestWorkersAreServedAsJSON(t *testing.T) {
	svc := apitest.NewService(model.Status{Self: "127.0.0.1:8899"})
	h := newHandler(t, svc, nil)
	if r := do(t, h, "GET", "/api/workers", ""); r.code != 200 || strings.TrimSpace(r.body) != "[]" {
		t.Fatalf("no workers = %d %q, want 200 []", r.code, r.body)
	}
	placed := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	svc.SetWorkers([]model.WorkerView{{
		Worker:   model.Worker{Name: "host-a", Incarnation: "0123456789abcdef", Host: "a.example", CPUs: 4, MemoryMB: 8192, Labels: map[string]string{"zone": "a"}},
		UsedCPUs: 1, UsedMemoryMB: 128,
		Tasks: []model.PlacedTask{{TaskID: "j@-@1@-@0@-@0", Job: "j", State: "RUNNING", PlacedAt: placed}},
	}})
	r := do(t, h, "GET", "/api/workers", "")
	for _, want := range []string{`"name":"host-a"`, `"cpus":4`, `"usedCpus":1`, `"labels":{"zone":"a"}`, `"taskId":"j@-@1@-@0@-@0"`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("GET /api/workers = %s, want %s in it", r.body, want)
		}
	}
	if r := do(t, h, "POST", "/api/workers", "{}"); r.code != 405 {
		t.Fatalf("POST /api/workers = %d, want 405", r.code)
	}
}
