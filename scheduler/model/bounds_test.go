package model

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

// TestEveryNumberIsBounded: each number a user sends is refused past its
// bound, naming the field, with ErrOutOfBounds; at the bound it passes.
// shardingTotalCount 2^40 made the launcher allocate until the runtime died.
func TestEveryNumberIsBounded(t *testing.T) {
	base := `"jobName":"j","appName":"a","cron":"0 0 0 * * ?"`
	for _, tc := range []struct {
		name, field string
		ok, over    string
	}{
		{"shards", "shardingTotalCount", fmt.Sprint(MaxShardingTotalCount), fmt.Sprint(MaxShardingTotalCount + 1)},
		{"shards 2^40", "shardingTotalCount", "1", "1099511627776"},
		{"retries", "retries", fmt.Sprint(MaxRetries), fmt.Sprint(MaxRetries + 1)},
		{"cpu", "cpuCount", fmt.Sprint(MaxCPUCount), "1e300"},
		{"memory", "memoryMB", fmt.Sprint(MaxMemoryMB), fmt.Sprint(MaxMemoryMB + 1)},
		{"timeout", "timeoutSeconds", fmt.Sprint(MaxTimeoutSeconds), fmt.Sprint(MaxTimeoutSeconds + 1)},
		{"timeout 2^40", "timeoutSeconds", "0", "1099511627776"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeJobString(`{` + base + `,"` + tc.field + `":` + tc.ok + `}`); err != nil {
				t.Fatalf("%s=%s refused: %v", tc.field, tc.ok, err)
			}
			_, err := decodeJobString(`{` + base + `,"` + tc.field + `":` + tc.over + `}`)
			wantField(t, err, tc.field)
			if !errors.Is(err, ErrOutOfBounds) {
				t.Fatalf("errors.Is(%v, ErrOutOfBounds) = false", err)
			}
		})
	}
	for _, tc := range []struct {
		name, field string
		app         func(*App)
	}{
		{"cpu", "cpuCount", func(a *App) { a.CPUCount = MaxCPUCount * 2 }},
		{"memory", "memoryMB", func(a *App) { a.MemoryMB = math.Inf(1) }},
		{"sampling", "eventTraceSamplingCount", func(a *App) { a.EventTraceSamplingCount = MaxEventTraceSamplingCount + 1 }},
	} {
		t.Run("app "+tc.name, func(t *testing.T) {
			app := App{AppName: "a"}
			tc.app(&app)
			_, err := app.Check()
			wantField(t, err, tc.field)
			if !errors.Is(err, ErrOutOfBounds) {
				t.Fatalf("errors.Is(%v, ErrOutOfBounds) = false", err)
			}
		})
	}
}

// TestGoCallersFloatsAreBounded: NaN and ±Inf cannot come as JSON, but a Go
// caller (or a test) can hand them over.
func TestGoCallersFloatsAreBounded(t *testing.T) {
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		j := Job{JobName: "j", AppName: "a", Cron: "0 0 0 * * ?", CPUCount: v}
		if _, err := j.Check(); !errors.Is(err, ErrInvalid) {
			t.Errorf("cpuCount %v: Check = %v, want ErrInvalid", v, err)
		}
		j = Job{JobName: "j", AppName: "a", Cron: "0 0 0 * * ?", MemoryMB: v}
		if _, err := j.Check(); !errors.Is(err, ErrInvalid) {
			t.Errorf("memoryMB %v: Check = %v, want ErrInvalid", v, err)
		}
	}
}

// TestLargeStringsAreRefusedBeforeTheyAreParsed: a Go caller's shard
// parameters are not bounded by a reader; the size check comes first.
func TestLargeStringsAreRefusedBeforeTheyAreParsed(t *testing.T) {
	j := Job{JobName: "j", AppName: "a", Cron: "0 0 0 * * ?", ShardingItemParameters: strings.Repeat("0=a,", MaxConfigBytes)}
	_, err := j.Check()
	wantField(t, err, "shardingItemParameters")
	j = Job{JobName: "j", AppName: "a", Cron: "0 0 0 * * ?", TimeZone: strings.Repeat("x", MaxConfigBytes)}
	_, err = j.Check()
	wantField(t, err, "timeZone")
}
