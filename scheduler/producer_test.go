package scheduler

import (
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
)

func TestCronFiresRunOnceEachAndNewJobsDoNotBackFill(t *testing.T) {
	e := newMemEnv(t)
	e.cluster.FinishOnLaunch = true
	e.clock.Advance(5 * time.Second) // registered at 10:00:05
	e.start()
	register(t, e.svc(), testJob("j", "0/10 * * * * ?"))
	settle(e.cluster)
	wantStarted(t, e.cluster, "j", nil) // 10:00:00 is before the registration

	for range 3 {
		e.clock.Advance(10 * time.Second)
		eventually(t, "the fire ran", func() bool { return len(startedOf(e.cluster, "j")) > 0 })
	}
	eventually(t, "three fires ran", func() bool { return len(startedOf(e.cluster, "j")) == 3 })
	settle(e.cluster)
	wantStarted(t, e.cluster, "j", ids("j", t0.Add(10*time.Second), t0.Add(20*time.Second), t0.Add(30*time.Second)))
	rn := readyNodeOf(t, e.store, "j")
	if len(rn.FireTimes) != 0 || !rn.LastFire.Equal(t0.Add(30*time.Second)) || !rn.RegisteredAt.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("ready node = %+v, want no pending fires, last fire 10:00:30, registered 10:00:05", rn)
	}
	if got := e.store.Paths(store.RunningRoot + "/j"); len(got) > 1 {
		t.Fatalf("running nodes left after every task finished: %v", got)
	}
}

func TestNewTermCatchesUpMissedFiresByMisfirePolicy(t *testing.T) {
	for _, misfire := range []bool{true, false} {
		t.Run(map[bool]string{true: "misfire on: all missed fires", false: "misfire off: only the latest"}[misfire], func(t *testing.T) {
			e := newMemEnv(t)
			e.cluster.FinishOnLaunch = true
			n := e.start()
			job := testJob("j", "0/10 * * * * ?")
			job.Misfire = misfire
			job.ConcurrencyPolicy = model.ConcurrencyForbid
			register(t, e.svc(), job)
			e.clock.Advance(10 * time.Second)
			eventually(t, "the first fire ran", func() bool { return len(startedOf(e.cluster, "j")) == 1 })
			settle(e.cluster)
			n.stop()

			// Nobody leads for a minute: six fires are missed.
			e.clock.Advance(time.Minute)
			e.start()
			want := ids("j", t0.Add(10*time.Second))
			if misfire {
				for i := 2; i <= 7; i++ {
					want = append(want, model.TaskID("j", t0.Add(time.Duration(i)*10*time.Second), 0, 0))
				}
			} else {
				want = append(want, model.TaskID("j", t0.Add(70*time.Second), 0, 0))
			}
			eventually(t, "the missed fires ran", func() bool { return len(startedOf(e.cluster, "j")) >= len(want) })
			settle(e.cluster)
			wantStarted(t, e.cluster, "j", want)
			if e.cluster.Opened() != 2 {
				t.Fatalf("executors opened = %d, want one per term (2)", e.cluster.Opened())
			}
		})
	}
}

func TestQueueLimitCapsPendingFires(t *testing.T) {
	e := newMemEnv(t)
	e.start(func(c *Config) { c.QueueLimit = 3 })
	job := testJob("j", "* * * * * ?")
	job.ConcurrencyPolicy = model.ConcurrencyForbid
	register(t, e.svc(), job)
	e.clock.Advance(time.Second)
	eventually(t, "the first fire runs", func() bool { return len(e.cluster.Running()) == 1 })
	// It keeps running: FORBID holds the next fires on the ready queue.
	e.clock.Advance(time.Minute)
	eventually(t, "the queue fills", func() bool { return len(readyNodeOf(t, e.store, "j").FireTimes) == 3 })
	settle(e.cluster)
	rn := readyNodeOf(t, e.store, "j")
	if len(rn.FireTimes) != 3 || !rn.FireTimes[0].Equal(t0.Add(2*time.Second)) {
		t.Fatalf("ready fires = %v, want the 3 oldest from 10:00:02", rn.FireTimes)
	}
	if !rn.LastFire.Equal(t0.Add(61 * time.Second)) {
		t.Fatalf("last fire = %v, want now (10:01:01): the dropped fires are not produced again", rn.LastFire)
	}
	entries, err := e.svc().ReadyTasks(ctxT(t))
	mustDo(t, err)
	if len(entries) != 1 || entries[0].Job != "j" || entries[0].Times != 3 {
		t.Fatalf("ReadyTasks = %+v, want j with 3 fires", entries)
	}
}

func TestMisfireOffKeepsAtMostOnePendingFire(t *testing.T) {
	e := newMemEnv(t)
	e.start()
	job := testJob("j", "* * * * * ?")
	job.Misfire = false
	job.ConcurrencyPolicy = model.ConcurrencyForbid
	register(t, e.svc(), job)
	e.clock.Advance(time.Second)
	eventually(t, "the first fire runs", func() bool { return len(e.cluster.Running()) == 1 })
	for range 5 {
		e.clock.Advance(time.Second)
		time.Sleep(20 * time.Millisecond)
	}
	settle(e.cluster)
	rn := readyNodeOf(t, e.store, "j")
	if len(rn.FireTimes) != 1 || !rn.FireTimes[0].Equal(t0.Add(2*time.Second)) {
		t.Fatalf("ready fires = %v, want only 10:00:02 (a new fire replaces nothing)", rn.FireTimes)
	}
	// When the running task ends, the pending fire runs.
	e.cluster.Report(e.cluster.Running()[0], executor.StateFinished, "")
	eventually(t, "the pending fire runs", func() bool { return len(startedOf(e.cluster, "j")) == 2 })
	wantStarted(t, e.cluster, "j", ids("j", t0.Add(time.Second), t0.Add(2*time.Second)))
}

func TestCronIsReadInTheJobsTimeZone(t *testing.T) {
	e := newMemEnv(t)
	e.cluster.FinishOnLaunch = true
	// 23:59:00 UTC is 08:59 in Tokyo.
	e.clock.Advance(13*time.Hour + 59*time.Minute)
	e.start()
	job := testJob("tokyo", "0 0 9 * * ?")
	job.TimeZone = "Asia/Tokyo"
	register(t, e.svc(), job)
	e.clock.Advance(2 * time.Minute)
	eventually(t, "the 09:00 Tokyo fire ran", func() bool { return len(startedOf(e.cluster, "tokyo")) == 1 })
	wantStarted(t, e.cluster, "tokyo", ids("tokyo", time.Date(2024, 5, 2, 0, 0, 0, 0, time.UTC)))
}

func TestDailyJobInASkippedHourFiresOnceAtTheDSTChange(t *testing.T) {
	e := newMemEnv(t)
	e.cluster.FinishOnLaunch = true
	// 2024-03-10 05:00 UTC is 00:00 EST; at 07:00 UTC clocks jump to 03:00 EDT.
	e.clock = newClock(time.Date(2024, 3, 10, 5, 0, 0, 0, time.UTC))
	e.start()
	job := testJob("ny", "0 30 2 * * ?")
	job.TimeZone = "America/New_York"
	register(t, e.svc(), job)
	for range 6 {
		e.clock.Advance(30 * time.Minute)
		time.Sleep(10 * time.Millisecond)
	}
	eventually(t, "the fire ran", func() bool { return len(startedOf(e.cluster, "ny")) == 1 })
	settle(e.cluster)
	wantStarted(t, e.cluster, "ny", ids("ny", time.Date(2024, 3, 10, 7, 0, 0, 0, time.UTC)))
}

func TestLatestFireFindsTheLastMissedFireQuickly(t *testing.T) {
	for _, tc := range []struct {
		cron       string
		first, now time.Time
		wantLatest time.Time
	}{
		{"* * * * * ?", t0.Add(time.Second), t0.Add(30 * 24 * time.Hour).Add(500 * time.Millisecond), t0.Add(30 * 24 * time.Hour)},
		{"0 0 3 * * ?", time.Date(2024, 5, 2, 3, 0, 0, 0, time.UTC), t0.Add(400 * 24 * time.Hour), time.Date(2025, 6, 5, 3, 0, 0, 0, time.UTC)},
		{"0 0 * * * ?", t0.Add(time.Hour), t0.Add(time.Hour), t0.Add(time.Hour)},
	} {
		spec, err := testJob("j", tc.cron).Check()
		mustDo(t, err)
		s := spec.Schedule
		start := time.Now()
		got := latestFire(s, tc.first, tc.now)
		if !got.Equal(tc.wantLatest) {
			t.Errorf("%q: latestFire(%v, %v) = %v, want %v", tc.cron, tc.first, tc.now, got, tc.wantLatest)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%q: latestFire took %v", tc.cron, d)
		}
	}
}

func TestDisabledPeriodIsNotBackFilledAcrossTerms(t *testing.T) {
	e := newMemEnv(t)
	n := e.start()
	register(t, e.svc(), testJob("j", "* * * * * ?"))
	mustDo(t, e.svc().DisableJob(ctxT(t), "j"))
	n.stop()
	// A month without a leader, while the job was disabled: nothing is
	// owed when it is enabled again.
	e.clock.Advance(30 * 24 * time.Hour)
	e.start()
	settle(e.cluster)
	if rn := readyNodeOf(t, e.store, "j"); len(rn.FireTimes) != 0 {
		t.Fatalf("a disabled job produced %d fires", len(rn.FireTimes))
	}
	mustDo(t, e.svc().EnableJob(ctxT(t), "j"))
	settle(e.cluster)
	if got := startedOf(e.cluster, "j"); len(got) != 0 {
		t.Fatalf("enabling back-filled the disabled month: %v", got)
	}
}

func TestLongOutageFillsTheQueueUpToItsLimitOnly(t *testing.T) {
	e := newMemEnv(t)
	n := e.start(func(c *Config) { c.QueueLimit = 50 })
	job := testJob("j", "* * * * * ?")
	job.ConcurrencyPolicy = model.ConcurrencyForbid
	register(t, e.svc(), job)
	n.stop()
	e.clock.Advance(30 * 24 * time.Hour)
	e.cluster.LaunchErr = errInjected // the first fire moves to running, unlaunched, and holds the rest back
	start := time.Now()
	e.start(func(c *Config) { c.QueueLimit = 50 })
	eventually(t, "the queue is filled", func() bool { return len(readyNodeOf(t, e.store, "j").FireTimes) == 49 })
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("catching up a month took %v", d)
	}
	rn := readyNodeOf(t, e.store, "j")
	if !rn.FireTimes[0].Equal(t0.Add(2*time.Second)) || !rn.LastFire.Equal(e.clock.Now()) {
		t.Fatalf("queue from %v, last fire %v; want the oldest fires from 10:00:02 and the rest dropped up to now", rn.FireTimes[0], rn.LastFire)
	}
	recs, err := e.svc().RunningTasks(ctxT(t))
	mustDo(t, err)
	if len(recs) != 1 || recs[0].ID != model.TaskID("j", t0.Add(time.Second), 0, 0) || !recs[0].LaunchedAt.IsZero() {
		t.Fatalf("running = %+v, want the first fire, not yet launched", recs)
	}
}
