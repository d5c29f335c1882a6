package model

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Bounds of a trigger's own job parameter. A parameter rides on the job's
// ready node until its fire is launched, so both its size and the number
// of fires waiting with one are bounded: the node stays far below a
// store's request limit (16 × 4 KiB).
const (
	MaxTriggerParameterBytes    = 4096
	MaxPendingTriggerParameters = 16
)

// Trigger is a one-off run of a TRANSIENT job, now. If JobParameter is set
// (an empty string included) the run's tasks get it in place of the job's
// jobParameter, through retries and failover.
type Trigger struct {
	JobName      string  `json:"jobName"`
	JobParameter *string `json:"jobParameter,omitempty"`
}

// DecodeTrigger reads a trigger's body: Elastic-Job-Cloud's bare job name
// or a JSON string holding it, or a JSON object {"jobName": ...,
// "jobParameter": ...}.
func DecodeTrigger(body []byte) (Trigger, error) {
	raw := bytes.TrimSpace(body)
	var tr Trigger
	switch {
	case len(raw) > 0 && raw[0] == '{':
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&tr); err != nil {
			return Trigger{}, &ValidationError{Field: "body", Reason: "not a trigger object: " + err.Error()}
		}
		if dec.More() {
			return Trigger{}, &ValidationError{Field: "body", Reason: "more than one JSON value"}
		}
	case len(raw) > 0 && raw[0] == '"':
		if err := json.Unmarshal(raw, &tr.JobName); err != nil {
			return Trigger{}, &ValidationError{Field: "jobName", Reason: "the body is neither a bare name nor a JSON string"}
		}
	default:
		tr.JobName = string(raw)
	}
	tr.JobName = strings.TrimSpace(tr.JobName)
	return tr, tr.Check()
}

// Check validates a trigger.
func (tr Trigger) Check() error {
	if tr.JobName == "" {
		return &ValidationError{Field: "jobName", Reason: "is empty"}
	}
	if p := tr.JobParameter; p != nil {
		if len(*p) > MaxTriggerParameterBytes {
			return &ValidationError{Field: "jobParameter", Reason: fmt.Sprintf("is %d bytes, at most %d", len(*p), MaxTriggerParameterBytes)}
		}
		if !utf8.ValidString(*p) {
			return &ValidationError{Field: "jobParameter", Reason: "is not UTF-8"}
		}
	}
	return nil
}
