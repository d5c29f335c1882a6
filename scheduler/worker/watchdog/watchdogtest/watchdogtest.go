// Package watchdogtest lets a test binary play the hasched binary's
// watchdog: a worker under test starts its watchdog as a separate, detached
// process, and the only binary a test has at hand is itself.
//
//	func TestMain(m *testing.M) {
//		watchdogtest.Main() // returns unless this process is a watchdog
//		os.Exit(m.Run())
//	}
//
// and worker.Config{WatchdogCommand: watchdogtest.Command(dir)}.
package watchdogtest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/hasched/hasched/scheduler/worker/watchdog"
)

// arg marks the test binary's command line as a watchdog's.
const arg = "hasched-watchdog"

// Linger is how long a test's watchdog waits once no deadline is ahead
// before it exits (the hasched binary's waits watchdog.DefaultLinger), so
// that tests leave no process behind for long.
const Linger = time.Second

// Command is the WatchdogCommand of a worker under test with work
// directory dir.
func Command(dir string) []string {
	return CommandLinger(dir, Linger)
}

// CommandLinger is Command with another linger.
func CommandLinger(dir string, linger time.Duration) []string {
	return []string{os.Args[0], arg, "--dir", dir, "--linger", linger.String()}
}

// Main runs the watchdog and exits if this process was started by Command;
// otherwise it returns at once. Call it first thing in TestMain.
func Main() {
	if len(os.Args) < 2 || os.Args[1] != arg {
		return
	}
	fs := flag.NewFlagSet(arg, flag.ContinueOnError)
	dir := fs.String("dir", "", "the worker's work directory")
	fg := fs.Bool("foreground", false, "run here instead of detaching")
	linger := fs.Duration("linger", 0, "how long to wait once no deadline is ahead")
	if err := fs.Parse(os.Args[2:]); err != nil {
		os.Exit(2)
	}
	if err := watchdog.Main(context.Background(), *dir, *fg, *linger, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}
