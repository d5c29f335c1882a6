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
