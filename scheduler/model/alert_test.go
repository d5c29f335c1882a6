package model

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestAlertReceiversAreNamesBoundedInCount: a job names receivers; the
// names are bounded in count and form, duplicates are refused, and an
// update replaces the list.
func TestAlertReceiversAreNamesBoundedInCount(t *testing.T) {
	base := `"jobName":"j","appName":"a","cron":"0 0 0 * * ?"`
	job, err := decodeJobString(`{` + base + `,"alertReceivers":["ops","team-a.pager"]}`)
	if err != nil {
		t.Fatalf("two valid receivers refused: %v", err)
	}
	if fmt.Sprint(job.AlertReceivers) != "[ops team-a.pager]" {
		t.Fatalf("alertReceivers = %q, want [ops team-a.pager]", job.AlertReceivers)
	}

	names := make([]string, MaxAlertReceivers)
	for i := range names {
		names[i] = fmt.Sprintf("%q", fmt.Sprint("r", i))
	}
	if _, err := decodeJobString(`{` + base + `,"alertReceivers":[` + strings.Join(names, ",") + `]}`); err != nil {
		t.Fatalf("%d receivers refused: %v", MaxAlertReceivers, err)
	}
	_, err = decodeJobString(`{` + base + `,"alertReceivers":[` + strings.Join(names, ",") + `,"one-more"]}`)
	wantField(t, err, "alertReceivers")
	if !errors.Is(err, ErrOutOfBounds) {
		t.Fatalf("errors.Is(%v, ErrOutOfBounds) = false", err)
	}

	for _, bad := range []string{
		`""`, `"-ops"`, `"ops-"`, `"a/b"`, `"http://evil.example/hook"`, `"a b"`, `"\u0000x"`,
		`"` + strings.Repeat("x", MaxAlertReceiverName+1) + `"`,
		`"ops","ops"`,
	} {
		_, err := decodeJobString(`{` + base + `,"alertReceivers":[` + bad + `]}`)
		wantField(t, err, "alertReceivers")
	}
	if _, err := decodeJobString(`{` + base + `,"alertReceivers":["` + strings.Repeat("x", MaxAlertReceiverName) + `"]}`); err != nil {
		t.Fatalf("a %d-byte name refused: %v", MaxAlertReceiverName, err)
	}
	_, err = decodeJobString(`{` + base + `,"alertReceivers":"ops"}`)
	wantField(t, err, "alertReceivers")

	// A Go caller's job is checked the same way.
	_, err = Job{JobName: "j", AppName: "a", Cron: "0 0 0 * * ?", AlertReceivers: []string{"x", "x"}}.Check()
	wantField(t, err, "alertReceivers")

	// An update's list replaces the stored one; one without the field
	// keeps it.
	stored := Job{JobName: "j", AppName: "a", Cron: "0 0 0 * * ?", AlertReceivers: []string{"a", "b", "c"}}
	u, err := DecodeJobUpdate(strings.NewReader(`{"jobName":"j","alertReceivers":["d"]}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := u.Apply(stored)
	if err != nil || fmt.Sprint(got.AlertReceivers) != "[d]" {
		t.Fatalf("update: alertReceivers %q, %v; want [d]", got.AlertReceivers, err)
	}
	u, err = DecodeJobUpdate(strings.NewReader(`{"jobName":"j","description":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err = u.Apply(stored)
	if err != nil || fmt.Sprint(got.AlertReceivers) != "[a b c]" {
		t.Fatalf("update without the field: alertReceivers %q, %v; want [a b c]", got.AlertReceivers, err)
	}
}

func TestAJobWithoutAlertReceiversEncodesWithoutTheField(t *testing.T) {
	// Elastic-Job-Cloud's clients compare the JSON they read back.
	b := encodeJSON(NewJob())
	if strings.Contains(string(b), "alertReceivers") {
		t.Fatalf("a job without receivers encodes %s", b)
	}
}
