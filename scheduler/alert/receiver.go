package alert

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hasched/hasched/internal/defaults"
	"github.com/hasched/hasched/scheduler/model"
)

// Class is what a receiver subscribes to.
type Class string

const (
	// Failure: a task's run ended other than as it should (FAILED, LOST,
	// UNKNOWN, KILLED unasked) and the scheduler gives it up or moves it to
	// failover; with Receiver.Retries also when it is retried.
	Failure Class = "failure"
	// Timeout: a run ended TIMED_OUT, alerted as a Failure is.
	Timeout Class = "timeout"
	// Misfire: fires of a job were not queued.
	Misfire Class = "misfire"
	// Leadership: this process became leader, or its term ended. The
	// event has no job, so only global receivers can take it.
	Leadership Class = "leadership"
)

var classes = []Class{Failure, Timeout, Misfire, Leadership}

// Format is the body a receiver gets.
type Format string

const (
	// JSON is hasched's own payload (see Payload).
	JSON Format = "json"
	// Slack is a Slack incoming webhook's {"text": …} (Mattermost and
	// other Slack-compatible webhooks take it too).
	Slack Format = "slack"
)

// Bounds and defaults of a receiver.
const (
	MaxReceivers       = 64
	DefaultTimeout     = 10 * time.Second
	MaxTimeout         = time.Minute
	DefaultMaxAttempts = 3
	MaxMaxAttempts     = 10
	// maxSecretBytes caps a secret file: a key, not a document.
	maxSecretBytes = 4 << 10
	// maxFileBytes caps the alerts file.
	maxFileBytes = 1 << 20
	maxURLBytes  = 2048
)

// ErrInvalidConfig is a Config, a receiver or an alerts file that cannot
// be used.
var ErrInvalidConfig = errors.New("alert: invalid configuration")

// Receiver is one webhook an operator defines. Its URL and Secret come
// from the operator's alerts file, never from a job: a job only names
// receivers (model.Job.AlertReceivers).
type Receiver struct {
	// Name is how jobs and logs refer to it (model.CheckAlertReceiverName).
	Name string
	// URL is http or https. It is never logged (a Slack webhook's path is
	// its credential); logs name the receiver instead.
	URL string
	// Secret, if set, is the HMAC-SHA256 key of X-Hasched-Signature.
	Secret []byte
	// Format is JSON unless set.
	Format Format
	// Events are the classes it is sent; at least one.
	Events []Class
	// Global receivers hear of every job; the others only of the jobs that
	// name them.
	Global bool
	// Retries: also alert on a failed or timed-out run that the scheduler
	// retries (by default only on one it gives up or fails over, when the
	// job's retries are spent).
	Retries bool
	// Timeout bounds each attempt (DefaultTimeout if zero, at most
	// MaxTimeout).
	Timeout time.Duration
	// MaxAttempts bounds the attempts of one delivery (DefaultMaxAttempts
	// if zero, at most MaxMaxAttempts).
	MaxAttempts int
}

// check fills in r's defaults and validates it. Errors name the receiver,
// never its URL.
func (r *Receiver) check() error {
	if err := model.CheckAlertReceiverName("name", r.Name); err != nil {
		return fmt.Errorf("%w: receiver %v", ErrInvalidConfig, err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: receiver %q: %s", ErrInvalidConfig, r.Name, fmt.Sprintf(format, args...))
	}
	if len(r.URL) > maxURLBytes {
		return bad("url is longer than %d bytes", maxURLBytes)
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		return bad("url does not parse") // the error would quote the URL
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return bad("url: give http:// or https://")
	}
	if u.Host == "" || u.Hostname() == "" {
		return bad("url has no host")
	}
	if u.Fragment != "" {
		return bad("url has a #fragment, which is never sent")
	}
	switch r.Format {
	case "":
		r.Format = JSON
	case JSON, Slack:
	default:
		return bad("format %q: use json or slack", r.Format)
	}
	if len(r.Events) == 0 {
		return bad("events is empty: give some of failure, timeout, misfire, leadership")
	}
	for i, c := range r.Events {
		if !slices.Contains(classes, c) {
			return bad("event %q is unknown: use failure, timeout, misfire or leadership", c)
		}
		if slices.Contains(r.Events[:i], c) {
			return bad("event %q is given twice", c)
		}
	}
	if !r.Global && slices.Contains(r.Events, Leadership) {
		return bad("leadership events belong to no job: only a global receiver can take them")
	}
	if r.Secret != nil && len(r.Secret) == 0 {
		return bad("the secret is empty")
	}
	if r.MaxAttempts < 0 || r.MaxAttempts > MaxMaxAttempts {
		return bad("maxAttempts %d is outside [1, %d]", r.MaxAttempts, MaxMaxAttempts)
	}
	if r.MaxAttempts == 0 {
		r.MaxAttempts = DefaultMaxAttempts
	}
	return defaults.Durations(ErrInvalidConfig,
		defaults.Duration{Name: "receiver " + r.Name + " timeout", V: &r.Timeout, Default: DefaultTimeout, Max: MaxTimeout})
}

func (r *Receiver) wants(c Class) bool { return slices.Contains(r.Events, c) }

// fileReceiver is a receiver as the alerts file gives it.
type fileReceiver struct {
	Name        string  `json:"name"`
	URL         string  `json:"url"`
	SecretFile  string  `json:"secretFile"`
	Format      Format  `json:"format"`
	Events      []Class `json:"events"`
	Global      bool    `json:"global"`
	Retries     bool    `json:"retries"`
	Timeout     string  `json:"timeout"`
	MaxAttempts int     `json:"maxAttempts"`
}

// LoadFile reads an alerts file and the secret files it names, and
// validates every receiver:
//
//	{"receivers": [
//	  {"name": "ops", "url": "https://alerts.example/hasched",
//	   "secretFile": "/etc/hasched/ops.key", "format": "json",
//	   "events": ["failure", "timeout", "misfire", "leadership"],
//	   "global": true, "retries": false, "timeout": "10s", "maxAttempts": 5},
//	  {"name": "team-a", "url": "https://hooks.slack.com/services/…",
//	   "format": "slack", "events": ["failure", "timeout"]}
//	]}
//
// A relative secretFile is read relative to the alerts file. A secret is
// the file's first line. The file holds the URLs, which for Slack are
// credentials: keep it readable by hasched alone.
func LoadFile(path string) ([]Receiver, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", ErrInvalidConfig, path, err)
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrInvalidConfig, path, maxFileBytes)
	}
	var file struct {
		Receivers []fileReceiver `json:"receivers"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&file); err != nil {
		// encoding/json's errors quote no values, only types and fields.
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidConfig, path, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %s: unexpected data after the JSON object", ErrInvalidConfig, path)
	}
	if len(file.Receivers) > MaxReceivers {
		return nil, fmt.Errorf("%w: %s: %d receivers, at most %d", ErrInvalidConfig, path, len(file.Receivers), MaxReceivers)
	}
	out := make([]Receiver, 0, len(file.Receivers))
	for _, fr := range file.Receivers {
		r := Receiver{Name: fr.Name, URL: fr.URL, Format: fr.Format, Events: fr.Events,
			Global: fr.Global, Retries: fr.Retries, MaxAttempts: fr.MaxAttempts}
		if fr.Timeout != "" {
			if r.Timeout, err = time.ParseDuration(fr.Timeout); err != nil {
				return nil, fmt.Errorf("%w: receiver %q: timeout %q is not a duration such as 10s", ErrInvalidConfig, fr.Name, fr.Timeout)
			}
		}
		if fr.SecretFile != "" {
			p := fr.SecretFile
			if !filepath.IsAbs(p) {
				p = filepath.Join(filepath.Dir(path), p)
			}
			if r.Secret, err = readSecret(p); err != nil {
				return nil, fmt.Errorf("%w: receiver %q: %v", ErrInvalidConfig, fr.Name, err)
			}
		}
		out = append(out, r)
	}
	if err := checkReceivers(out); err != nil {
		return nil, err
	}
	return out, nil
}

// readSecret reads a key file's first line. Errors say what is wrong with
// the file, never what is in it.
func readSecret(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secretFile: %w", err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxSecretBytes+1))
	if err != nil {
		return nil, fmt.Errorf("secretFile %s: %w", path, err)
	}
	if len(b) > maxSecretBytes {
		return nil, fmt.Errorf("secretFile %s is larger than %d bytes", path, maxSecretBytes)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimRight(line, "\r")
	if line == "" {
		return nil, fmt.Errorf("secretFile %s is empty", path)
	}
	return []byte(line), nil
}

// checkReceivers validates every receiver in place and refuses two of one
// name.
func checkReceivers(rs []Receiver) error {
	if len(rs) > MaxReceivers {
		return fmt.Errorf("%w: %d receivers, at most %d", ErrInvalidConfig, len(rs), MaxReceivers)
	}
	seen := map[string]bool{}
	for i := range rs {
		if err := rs[i].check(); err != nil {
			return err
		}
		if seen[rs[i].Name] {
			return fmt.Errorf("%w: receiver %q is defined twice", ErrInvalidConfig, rs[i].Name)
		}
		seen[rs[i].Name] = true
	}
	return nil
}
