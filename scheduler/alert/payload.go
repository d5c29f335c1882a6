package alert

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hasched/hasched/scheduler/events"
	"github.com/hasched/hasched/scheduler/executor"
)

// maxMessage bounds the task's message in a payload: it is the executor's
// text (a process's last words), not a log.
const maxMessage = 1024

// Payload is the body of a JSON receiver's POST. Fields that do not belong
// to the event's class are left out.
type Payload struct {
	// Event is the class: failure, timeout, misfire or leadership.
	Event Class `json:"event"`
	// Time is when the scheduler saw it.
	Time time.Time `json:"time"`
	// Term is the leader's fencing token.
	Term int64 `json:"term,omitempty"`
	// Scheduler is the process that sent it (its advertised address).
	Scheduler string `json:"scheduler,omitempty"`
	// Leader is, for leadership, whether the process now leads.
	Leader *bool `json:"leader,omitempty"`

	Job      string     `json:"job,omitempty"`
	TaskID   string     `json:"taskId,omitempty"`
	Shard    *int       `json:"shard,omitempty"`
	Attempt  *int       `json:"attempt,omitempty"`
	FireTime *time.Time `json:"fireTime,omitempty"`
	// Count is, for misfire, how many fires were not queued.
	Count int `json:"count,omitempty"`

	State    executor.State `json:"state,omitempty"`
	Outcome  events.Outcome `json:"outcome,omitempty"`
	ExitCode *int           `json:"exitCode,omitempty"`
	Host     string         `json:"host,omitempty"`
	// Message is the executor's, cut to 1024 bytes.
	Message string `json:"message,omitempty"`
}

// classify says what an event is an alert of, if any, and whether only
// receivers that take retries want it.
func classify(ev events.Event) (c Class, retryOnly, ok bool) {
	switch ev.Kind {
	case events.Misfired:
		return Misfire, false, true
	case events.Leadership:
		return Leadership, false, true
	case events.Ended:
		if ev.State == executor.StateFinished {
			// Exited 0 (a DAEMON task run again is not a failure).
			return "", false, false
		}
		c = Failure
		if ev.State == executor.StateTimedOut {
			c = Timeout
		}
		switch ev.Outcome {
		case events.GivenUp, events.Failover:
			return c, false, true
		case events.Retry:
			return c, true, true
		}
	}
	return "", false, false
}

func payload(c Class, ev events.Event, scheduler string) Payload {
	p := Payload{Event: c, Time: ev.Time.UTC(), Term: ev.Term, Scheduler: scheduler, Job: ev.Job}
	if !ev.FireTime.IsZero() {
		ft := ev.FireTime.UTC()
		p.FireTime = &ft
	}
	switch c {
	case Leadership:
		leader := ev.Leader
		p.Leader = &leader
	case Misfire:
		p.Count = ev.Count
	case Failure, Timeout:
		shard, attempt, exit := ev.Shard, ev.Attempt, ev.ExitCode
		p.TaskID, p.Shard, p.Attempt, p.ExitCode = ev.TaskID, &shard, &attempt, &exit
		p.State, p.Outcome, p.Host = ev.State, ev.Outcome, ev.Host
		p.Message = truncate(ev.Message, maxMessage)
	}
	return p
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.ToValidUTF8(s[:cut], "\uFFFD") + "…"
}

// encode is a receiver's body for p.
func encode(f Format, p Payload) []byte {
	var v any = p
	if f == Slack {
		v = struct {
			Text string `json:"text"`
		}{slackText(p)}
	}
	b, err := json.Marshal(v)
	if err != nil {
		// Payload has only strings, numbers, times and bools.
		panic(fmt.Sprintf("alert: encode: %v", err))
	}
	return b
}

// slackText is the one-line summary a chat shows. Everything a user or a
// task wrote is escaped: Slack reads <…> as links and mentions
// (<!channel>), and a job's message must not page a channel.
func slackText(p Payload) string {
	var b strings.Builder
	switch p.Event {
	case Leadership:
		if *p.Leader {
			fmt.Fprintf(&b, ":crown: hasched: %s became leader (term %d)", slackEscape(p.Scheduler), p.Term)
		} else {
			fmt.Fprintf(&b, ":warning: hasched: %s is no longer leader (term %d)", slackEscape(p.Scheduler), p.Term)
		}
	case Misfire:
		fmt.Fprintf(&b, ":hourglass: hasched: job `%s` misfired: %d fire(s) up to %s were not queued",
			slackEscape(p.Job), p.Count, fireTime(p))
	case Failure, Timeout:
		icon, what := ":x:", "failed"
		if p.Event == Timeout {
			icon, what = ":alarm_clock:", "timed out"
		}
		fmt.Fprintf(&b, "%s hasched: job `%s` shard %d %s (state %s, exit code %d, attempt %d, fire %s",
			icon, slackEscape(p.Job), *p.Shard, what, p.State, *p.ExitCode, *p.Attempt, fireTime(p))
		if p.Host != "" {
			fmt.Fprintf(&b, ", host %s", slackEscape(p.Host))
		}
		b.WriteString("): ")
		switch p.Outcome {
		case events.Retry:
			b.WriteString("retrying")
		case events.Failover:
			b.WriteString("moved to failover")
		default:
			b.WriteString("given up")
		}
		if p.Message != "" {
			fmt.Fprintf(&b, "\n> %s", slackEscape(strings.ReplaceAll(p.Message, "\n", " ")))
		}
	}
	return b.String()
}

func fireTime(p Payload) string {
	if p.FireTime == nil {
		return "?"
	}
	return p.FireTime.Format(time.RFC3339)
}

// slackEscape escapes the three characters Slack's message text gives a
// meaning to.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
