package model

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeTrigger(t *testing.T) {
	p := func(s string) *string { return &s }
	for _, c := range []struct {
		body  string
		name  string
		param *string
	}{
		{"foo_job", "foo_job", nil},
		{" foo_job\n", "foo_job", nil},
		{`"foo_job"`, "foo_job", nil},
		{`{"jobName":"foo_job"}`, "foo_job", nil},
		{`{"jobName":"foo_job","jobParameter":"day=2026-12-01"}`, "foo_job", p("day=2026-12-01")},
		{`{"jobName":"foo_job","jobParameter":""}`, "foo_job", p("")},
	} {
		tr, err := DecodeTrigger([]byte(c.body))
		if err != nil {
			t.Errorf("DecodeTrigger(%q): %v", c.body, err)
			continue
		}
		if tr.JobName != c.name || (tr.JobParameter == nil) != (c.param == nil) || (c.param != nil && *tr.JobParameter != *c.param) {
			t.Errorf("DecodeTrigger(%q) = %+v", c.body, tr)
		}
	}
	for _, body := range []string{
		"", `""`, `{"jobName":""}`, `{"job":"x"}`, `{"jobName":"x"} {}`, `{"jobName":"x","jobParameter":3}`,
		`{"jobName":"x","jobParameter":"` + strings.Repeat("a", MaxTriggerParameterBytes+1) + `"}`,
		"\"\\ud800\"x",
	} {
		if _, err := DecodeTrigger([]byte(body)); !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodeTrigger(%.40q): %v, want ErrInvalid", body, err)
		}
	}
	bad := string([]byte{0xff})
	if err := (Trigger{JobName: "x", JobParameter: &bad}).Check(); !errors.Is(err, ErrInvalid) {
		t.Errorf("a parameter that is not UTF-8: %v", err)
	}
}
