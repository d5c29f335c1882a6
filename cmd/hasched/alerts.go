package main

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/pflag"

	"github.com/hasched/hasched/scheduler"
	"github.com/hasched/hasched/scheduler/alert"
	"github.com/hasched/hasched/scheduler/events"
)

const (
	// alertsCloseTimeout bounds how long a stopping process waits for
	// alerts still being delivered (the leadership change its own stop
	// caused among them).
	alertsCloseTimeout = 5 * time.Second
	// jobReceiversTimeout bounds the read of a job's alertReceivers: on
	// the leader it is a memory read; elsewhere (around a term's end) a
	// store read.
	jobReceiversTimeout = 2 * time.Second
)

// alertFlags are serve's alert flags.
type alertFlags struct {
	file string
}

func (a *alertFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&a.file, "alerts-config", "", `JSON file of alert webhooks: {"receivers":[{"name":"ops","url":"https://…","secretFile":"ops.key","format":"json|slack","events":["failure","timeout","misfire","leadership"],"global":true,"retries":false,"timeout":"10s","maxAttempts":3}]}; a job names the non-global ones it wants in alertReceivers. The URLs may be credentials (Slack's): keep the file readable by hasched alone`)
}

// validate reads the alerts file and the secrets it names; no file, no
// receivers.
func (a alertFlags) validate() ([]alert.Receiver, error) {
	if a.file == "" {
		return nil, nil
	}
	rs, err := alert.LoadFile(a.file)
	if err != nil {
		return nil, usagef("--alerts-config: %s", strings.TrimPrefix(err.Error(), alert.ErrInvalidConfig.Error()+": "))
	}
	return rs, nil
}

// alertSink is what serve hands the scheduler as its Events: the notifier,
// or nothing without receivers.
type alertSink struct {
	notifier *alert.Notifier
	// sched is set once the scheduler exists; the notifier reads jobs'
	// alertReceivers through it.
	sched atomic.Pointer[scheduler.Scheduler]
}

// startAlerts starts the notifier of receivers; with none it starts
// nothing.
func startAlerts(receivers []alert.Receiver, advertise string, log hclog.Logger) (*alertSink, error) {
	a := &alertSink{}
	if len(receivers) == 0 {
		return a, nil
	}
	n, err := alert.New(alert.Config{
		Receivers:    receivers,
		JobReceivers: a.jobReceivers,
		Scheduler:    advertise,
		Logger:       log,
	})
	if err != nil {
		return nil, err
	}
	a.notifier = n
	names := make([]string, len(receivers))
	for i, r := range receivers {
		names[i] = r.Name
	}
	log.Info("alerts on", "receivers", names)
	return a, nil
}

// events is the scheduler's Config.Events: nil (discarded) without
// receivers; a nil *Notifier in the interface would not be.
func (a *alertSink) events() events.Sink {
	if a.notifier == nil {
		return nil
	}
	return a.notifier
}

func (a *alertSink) jobReceivers(job string) []string {
	s := a.sched.Load()
	if s == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), jobReceiversTimeout)
	defer cancel()
	j, err := s.Job(ctx, job)
	if err != nil {
		// Deregistered since, or unreadable for now: the global
		// receivers still hear of it.
		return nil
	}
	return j.AlertReceivers
}

// close delivers what is queued, for at most alertsCloseTimeout.
func (a *alertSink) close(log hclog.Logger) {
	if a.notifier == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), alertsCloseTimeout)
	defer cancel()
	if err := a.notifier.Close(ctx); err != nil {
		log.Warn("alerts still being delivered were abandoned", "waited", alertsCloseTimeout)
	}
}
