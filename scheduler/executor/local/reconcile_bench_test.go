package local

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
)

// reconcileBenchTasks is how many running tasks a new term adopts in
// BenchmarkReconcile10000 (issue 11's takeover has 10,000).
const reconcileBenchTasks = 10_000

// BenchmarkReconcile10000 times what a new term asks of the executor
// before it serves (scheduler/term.go establish): an explicit Reconcile of
// every task the store says runs, then an implicit one, here of 10,000
// running tasks left by a previous process. Every task names one live
// sleeping process; the statuses are drained as the term's pump would.
//
//   - alive-lock: the directories as Launch leaves them (task.json, stdout,
//     stderr, a pid file recording the alive lock, the alive file locked
//     exclusively, as a live wrapper holds it: here by this process, on an
//     open file description of each task's own).
//   - pid-only: the directories integration's BenchmarkHATakeover seeds (a
//     pid file without the alive lock, nothing else).
func BenchmarkReconcile10000(b *testing.B) {
	for _, lock := range []bool{true, false} {
		name := "pid-only"
		if lock {
			name = "alive-lock"
		}
		b.Run(name, func(b *testing.B) {
			work := b.TempDir()
			cfg := Config{WorkDir: work, Host: "bench-host"}
			if err := func() error { c, err := cfg.withDefaults(); cfg = c; return err }(); err != nil {
				b.Fatal(err)
			}
			if err := cfg.prepare(); err != nil {
				b.Fatal(err)
			}
			ids := seedRunningTasks(b, cfg, reconcileBenchTasks, lock)
			var m []reconcileSample
			b.ResetTimer()
			for range b.N {
				benchTermReconcile(b, cfg, ids, &m)
			}
			// The best of the runs too: on a shared machine the mean
			// says much about the neighbours.
			var sum reconcileSample
			best := m[0]
			for _, s := range m {
				sum.explicit += s.explicit
				sum.implicit += s.implicit
				sum.cpu += s.cpu
				if s.explicit+s.implicit < best.explicit+best.implicit {
					best = s
				}
			}
			n := float64(len(m))
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(ms(sum.explicit)/n, "explicit-ms/op")
			b.ReportMetric(ms(sum.implicit)/n, "implicit-ms/op")
			b.ReportMetric(ms(sum.cpu)/n, "cpu-ms/op")
			b.ReportMetric(ms(best.explicit+best.implicit), "best-ms")
		})
	}
}

// benchTermReconcile opens a term's executor, reconciles ids explicitly and
// then implicitly, checks the answers and closes it; only the reconciliation
// is timed.
func benchTermReconcile(b *testing.B, cfg Config, ids []string, m *[]reconcileSample) {
	b.StopTimer()
	e, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	// Close drops what the term has not taken yet: the answers are
	// counted as they come, and Close waits for all of them.
	want := 2 * len(ids)
	answers := make(chan map[executor.State]int, 1)
	go func() {
		n, got := map[executor.State]int{}, 0
		for s := range e.Statuses() {
			if s.Reconcile {
				n[s.State]++
				if got++; got == want {
					answers <- n
				}
			}
		}
	}()
	ctx := context.Background()
	cpu0 := processCPU(b)
	t0 := time.Now()
	b.StartTimer()
	if err := e.Reconcile(ctx, ids); err != nil {
		b.Fatal(err)
	}
	t1 := time.Now()
	if err := e.Reconcile(ctx, nil); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	t2 := time.Now()
	// On a shared machine the wall time says as much about the neighbours
	// as about this code: the CPU time this process spent (monitor and
	// status queue included) is reported too.
	*m = append(*m, reconcileSample{explicit: t1.Sub(t0), implicit: t2.Sub(t1), cpu: processCPU(b) - cpu0})
	select {
	case n := <-answers:
		if n[executor.StateRunning] != want {
			b.Errorf("reconcile answers %v, want %d RUNNING", n, want)
		}
	case <-time.After(time.Minute):
		b.Errorf("fewer than %d reconcile answers after a minute", want)
	}
	if err := e.Close(); err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
}

// seedRunningTasks makes n task directories of running tasks whose process
// is one sleeping child of this test (killed when the benchmark ends), and
// returns their IDs. With lock, each alive file is locked as its wrapper
// would hold it, until the benchmark ends.
func seedRunningTasks(b *testing.B, cfg Config, n int, lock bool) []string {
	b.Helper()
	sleeper := exec.Command("sleep", "86400")
	sleeper.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := sleeper.Start(); err != nil {
		b.Fatalf("start the sleeper: %v", err)
	}
	b.Cleanup(func() {
		_ = syscall.Kill(-sleeper.Process.Pid, syscall.SIGKILL)
		_ = sleeper.Wait()
	})
	st, err := readProcStat(sleeper.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	host := currentHost()
	started := time.Now().Add(-time.Minute).UTC()
	p := pidFile{
		Pid: sleeper.Process.Pid, Pgid: sleeper.Process.Pid, StartTime: st.startTime,
		BootID: host.bootID, PidNS: host.pidNS, Host: cfg.Host, Launcher: os.Getpid(),
		Time: started, AliveLock: lock,
	}
	pj, err := json.Marshal(p)
	if err != nil {
		b.Fatal(err)
	}
	fire := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	ids := make([]string, n)
	for i := range n {
		tk := executor.Task{
			ID:  fmt.Sprintf("bench-%07d@%d@0@0", i, fire.UnixMilli()),
			Job: fmt.Sprintf("bench-%07d", i), App: "bench", FireTime: fire,
			ShardingTotalCount: 1, Command: "true",
		}
		ids[i] = tk.ID
		dir := filepath.Join(cfg.tasksDir(), taskDirName(tk.ID))
		if err := os.Mkdir(dir, 0o750); err != nil {
			b.Fatal(err)
		}
		if !lock {
			writeBenchFile(b, filepath.Join(dir, filePid), pj)
			continue
		}
		tj, err := json.MarshalIndent(tk, "", "  ")
		if err != nil {
			b.Fatal(err)
		}
		if err := writeAtomic(filepath.Join(dir, fileTask), tj); err != nil {
			b.Fatal(err)
		}
		writeBenchFile(b, filepath.Join(dir, fileStdout), nil)
		writeBenchFile(b, filepath.Join(dir, fileStderr), nil)
		alive, err := lockAlive(dir)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { alive.Close() })
		if _, err := writeExclusive(filepath.Join(dir, filePid), pj); err != nil {
			b.Fatal(err)
		}
	}
	return ids
}

func writeBenchFile(b *testing.B, path string, data []byte) {
	b.Helper()
	if err := os.WriteFile(path, data, 0o640); err != nil {
		b.Fatal(err)
	}
}

// reconcileSample is one term's reconciliation: the wall time of each call
// and the CPU time of the process meanwhile.
type reconcileSample struct{ explicit, implicit, cpu time.Duration }

// processCPU is the user and system time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
