package main

import (
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/model"
)

func TestQuarantineCommand(t *testing.T) {
	svc, env := server(t, nil)
	cli(t, env, "", "quarantine").ok(t).has(t, "(none)")
	seen := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	svc.SetQuarantined([]model.QuarantinedConfig{{Kind: model.KindJob, Name: "huge", Error: "invalid shardingTotalCount: 1099511627776 is above 1000", SeenAt: seen}})
	cli(t, env, "", "quarantine").ok(t).has(t, "KIND", "job", "huge", "2026-12-02T10:00:00Z", "is above 1000")
	var q []model.QuarantinedConfig
	decodeOut(t, cli(t, env, "", "quarantine", "-o", "json").ok(t), &q)
	if len(q) != 1 || q[0].Name != "huge" || !q[0].SeenAt.Equal(seen) {
		t.Fatalf("quarantine -o json = %+v", q)
	}
	cli(t, env, "", "quarantine", "extra").fails(t, "--help")
}

func TestWorkersCommand(t *testing.T) {
	svc, env := server(t, nil)
	cli(t, env, "", "workers").ok(t).has(t, "(none)")
	placed := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	svc.SetWorkers([]model.WorkerView{
		{Worker: model.Worker{Name: "host-a", Incarnation: "0123456789abcdef", Host: "a.example", CPUs: 4, MemoryMB: 8192, Labels: map[string]string{"zone": "a", "rack": "r1"}, Started: placed},
			UsedCPUs: 1.5, UsedMemoryMB: 256,
			Tasks: []model.PlacedTask{{TaskID: "j@-@1@-@0@-@0", Job: "j", State: "RUNNING", PlacedAt: placed}}},
		{Worker: model.Worker{Name: "host-b", Incarnation: "fedcba9876543210", Host: "b.example", CPUs: 2, MemoryMB: 1024, Draining: true}},
	})
	cli(t, env, "", "workers").ok(t).has(t, "NAME", "host-a", "a.example", "1.5/4", "256/8192", "rack=r1,zone=a", "up", "host-b", "draining")
	cli(t, env, "", "workers", "--tasks").ok(t).has(t, "WORKER", "j@-@1@-@0@-@0", "RUNNING", "2026-12-02T10:00:00Z")
	var ws []model.WorkerView
	decodeOut(t, cli(t, env, "", "workers", "-o", "json").ok(t), &ws)
	if len(ws) != 2 || ws[0].Name != "host-a" || len(ws[0].Tasks) != 1 || !ws[1].Draining {
		t.Fatalf("workers -o json = %+v", ws)
	}
	cli(t, env, "", "workers", "extra").fails(t, "--help")
}
