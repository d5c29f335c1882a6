package local

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// hostIdentity tells whether a pid recorded by another process can be
// checked from here at all: pids mean nothing across a reboot (the start
// times restart too, so a recorded pid and start time can even match a new
// process) or across PID namespaces (two containers sharing a WorkDir).
type hostIdentity struct {
	bootID string
	pidNS  string
}

func currentHost() hostIdentity {
	var h hostIdentity
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		h.bootID = strings.TrimSpace(string(b))
	}
	if ns, err := os.Readlink("/proc/self/ns/pid"); err == nil {
		h.pidNS = ns
	}
	return h
}

// procStat is what hasched reads of /proc/<pid>/stat.
type procStat struct {
	state     byte   // field 3: R, S, D, Z, X, ...
	pgrp      int    // field 5
	startTime uint64 // field 22: clock ticks after boot
}

// readProcStat parses /proc/<pid>/stat. The command name (field 2) is in
// parentheses and may itself contain spaces and parentheses, so fields are
// counted from the last ')'.
func readProcStat(pid int) (procStat, error) {
	b, err := readSmall("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3, so field n is f[n-3].
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	pgrp, err := strconv.Atoi(f[5-3])
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: pgrp: %w", pid, err)
	}
	st, err := strconv.ParseUint(f[22-3], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: starttime: %w", pid, err)
	}
	return procStat{state: f[0][0], pgrp: pgrp, startTime: st}, nil
}

// liveness is what can be said about a recorded process.
type liveness int

const (
	procDead      liveness = iota // gone, a zombie, or its pid now names another process
	procAlive                     // the very process that was recorded
	procUncertain                 // recorded in another PID namespace: cannot be checked
	procRebooted                  // recorded before the host rebooted: gone
)

// procCache remembers, for one round of judgements (a Reconcile, a poll of
// the monitor), what /proc said of each pid, so that the tasks of one
// process cost one read of it. A process found alive may die during the
// round; judge reads the exit file after the liveness, so a judgement
// made from the cache is one made when the cache read /proc: RUNNING
// then, and its end is reported by a later poll. A nil *procCache reads
// /proc every time.
type procCache struct {
	// at is when the round began: what is judged through the cache is
	// known as of then (at least).
	at time.Time
	mu sync.Mutex
	m  map[int]procLookup
}

type procLookup struct {
	st  procStat
	err error
}

func newProcCache() *procCache { return &procCache{at: time.Now(), m: make(map[int]procLookup)} }

// stat is readProcStat(pid), read once per cache.
func (c *procCache) stat(pid int) (procStat, error) {
	if c == nil {
		return readProcStat(pid)
	}
	c.mu.Lock()
	v, ok := c.m[pid]
	c.mu.Unlock()
	if !ok {
		v.st, v.err = readProcStat(pid)
		c.mu.Lock()
		c.m[pid] = v
		c.mu.Unlock()
	}
	return v.st, v.err
}

// check tells whether the process recorded in p still runs, reading /proc
// through c.
func (h hostIdentity) check(p pidFile, c *procCache) liveness {
	if p.BootID != "" && h.bootID != "" && p.BootID != h.bootID {
		return procRebooted
	}
	if p.PidNS != "" && h.pidNS != "" && p.PidNS != h.pidNS {
		return procUncertain
	}
	if p.Pid <= 0 {
		return procDead
	}
	// No /proc entry (or one that cannot be read): gone.
	st, err := c.stat(p.Pid)
	if err != nil {
		return procDead
	}
	// A zombie has finished: it only waits for its parent (which may be
	// an init that never reaps) to collect it.
	if st.state == 'Z' || st.state == 'X' || st.startTime != p.StartTime {
		return procDead
	}
	return procAlive
}

// aliveHeld tells whether the wrapper of the task in dir still holds its
// alive lock (see fileAlive). The probe takes a shared lock, so probes of
// several executors never mistake each other for the wrapper, which holds
// an exclusive one. ok is false when the lock cannot be probed at all (no
// file: a task launched before the lock existed).
func aliveHeld(dir string) (held, ok bool) {
	fd, err := openRead(filepath.Join(dir, fileAlive))
	if err != nil {
		return false, false
	}
	// Closing fd releases the probe's lock, if it got it.
	defer syscall.Close(fd)
	for {
		switch err := syscall.Flock(fd, syscall.LOCK_SH|syscall.LOCK_NB); {
		case err == nil:
			// Nobody holds it exclusively: the wrapper has exited or died.
			return false, true
		case errors.Is(err, syscall.EWOULDBLOCK):
			return true, true
		case errors.Is(err, syscall.EINTR):
		default:
			return false, false
		}
	}
}

// liveness of the task in dir recorded in p. The alive lock decides where
// there is one: the kernel drops a flock when the last descriptor of its
// open file description closes, and only the wrapper holds that one (the
// task's command does not get it; the wrapper's own helpers, printf and mv
// of the exit file, live shorter than it). So a held lock is a live
// wrapper, whatever namespace it runs in, and a free one a gone wrapper,
// whatever its pid now names; the pid need not be looked up at all, which
// matters to a new term judging thousands of tasks. A lock across PID
// namespaces is the kernel's too, seen the same from every namespace: a
// task whose wrapper died there without an exit file is LOST instead of
// RUNNING for ever (which kept FORBID jobs and DAEMON shards from ever
// running again). Without the lock the pid and its start time decide, in
// this PID namespace; a task recorded without it (launched by an older
// executor) in another namespace stays uncertain, and one recorded with it
// whose file is gone is dead there: nothing will ever tell more.
func (h hostIdentity) liveness(dir string, p pidFile, c *procCache) liveness {
	if !p.AliveLock {
		return h.check(p, c)
	}
	if p.BootID != "" && h.bootID != "" && p.BootID != h.bootID {
		return procRebooted
	}
	if held, ok := aliveHeld(dir); ok {
		if held {
			return procAlive
		}
		return procDead
	}
	if l := h.check(p, c); l != procUncertain {
		return l
	}
	return procDead
}

// groupIsOurs tells whether signalling process group p.Pgid can only hit
// the task's processes. The group's id is the wrapper's pid; the kernel
// does not hand out a pid still in use as a process group id, so while the
// group has members it is ours, unless a process now running under that pid
// (necessarily after our group emptied) says otherwise.
func (h hostIdentity) groupIsOurs(p pidFile) bool {
	if p.Pgid <= 0 {
		return false
	}
	if l := h.check(p, nil); l == procUncertain || l == procRebooted {
		return false // not a process group of this kernel or namespace
	}
	st, err := readProcStat(p.Pgid)
	if err != nil {
		return true // no leader: what remains of the group is the task's
	}
	return st.startTime == p.StartTime
}

// signalGroup sends sig to the task's process group if it is still ours.
func (h hostIdentity) signalGroup(p pidFile, sig syscall.Signal) error {
	if !h.groupIsOurs(p) {
		return nil
	}
	if err := syscall.Kill(-p.Pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %v to process group %d: %w", sig, p.Pgid, err)
	}
	return nil
}
