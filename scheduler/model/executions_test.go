package model

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestExecutionJSONNamesAreElasticJobCloudsWhereItHasThem(t *testing.T) {
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	b, err := json.Marshal(Execution{TaskID: "t", Job: "j", Shard: 1, FireTime: at, Attempt: 2, Host: "h", State: "FINISHED",
		ExitCode: 0, StartTime: at, CompleteTime: at, Success: true, Outcome: "done"})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{`"taskId"`, `"jobName"`, `"shardingItem"`, `"fireTime"`, `"attempt"`, `"hostname"`, `"state"`,
		`"exitCode"`, `"startTime"`, `"completeTime"`, `"success"`, `"outcome"`} {
		if !strings.Contains(string(b), name) {
			t.Errorf("%s lacks %s", b, name)
		}
	}
}

func TestCheckExecutionsLimit(t *testing.T) {
	for _, n := range []int{1, DefaultExecutionsLimit, MaxExecutionsLimit} {
		if err := CheckExecutionsLimit(n); err != nil {
			t.Errorf("CheckExecutionsLimit(%d) = %v, want nil", n, err)
		}
	}
	for _, n := range []int{0, -1, MaxExecutionsLimit + 1} {
		err := CheckExecutionsLimit(n)
		var verr *ValidationError
		if !errors.As(err, &verr) || verr.Field != "limit" || !errors.Is(err, ErrOutOfBounds) {
			t.Errorf("CheckExecutionsLimit(%d) = %v, want an out-of-bounds error on limit", n, err)
		}
	}
}

func TestTrimmedCutsTheMessageAtARuneBoundary(t *testing.T) {
	ex := Execution{Message: "a" + strings.Repeat("€", MaxExecutionMessage)} // 3 bytes each
	got := ex.Trimmed().Message
	if len(got) > MaxExecutionMessage || !utf8.ValidString(got) || !strings.HasPrefix(ex.Message, got) || len(got) < MaxExecutionMessage-3 {
		t.Fatalf("Trimmed message of %d bytes (valid UTF-8: %v), want at most %d, cut at a rune", len(got), utf8.ValidString(got), MaxExecutionMessage)
	}
	short := Execution{Message: "ok"}
	if short.Trimmed().Message != "ok" {
		t.Fatal("a short message was changed")
	}
}
