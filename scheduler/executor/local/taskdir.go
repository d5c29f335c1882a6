package local

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
)

// Files of a task directory (see the package comment).
const (
	fileTask   = "task.json"
	fileStdout = "stdout"
	fileStderr = "stderr"
	filePid    = "pid"
	fileExit   = "exit"
	fileKilled = "killed"
	// fileTimedOut is the timeout's marker, as fileKilled is Kill's: its
	// time is when the task was found past its deadline.
	fileTimedOut = "timedout"
	fileFailed   = "failed"
	// fileAlive is locked (flock, exclusive) by the task's wrapper for as
	// long as it lives: see hostIdentity.liveness.
	fileAlive = "alive"
	// dirApp holds the task's own copy of its app, its working directory.
	dirApp = "app"

	// maxEscapedLen keeps escaped names well below NAME_MAX (255); longer
	// IDs get a hashed name and are identified by their task.json.
	maxEscapedLen = 200
	hashedPrefix  = "~" // never produced by escapeName: '~' is escaped
	// stderrExcerpt bounds the stderr tail in a FAILED status's message.
	stderrExcerpt = 1024
)

// escapeName turns any string into one safe, reversible file name:
// [A-Za-z0-9_-] and non-leading '.' stay, every other byte becomes %XX.
// The empty string, "." and ".." cannot come out of it.
func escapeName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-',
			c == '.' && i > 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	if b.Len() == 0 {
		return "%" // the empty name; unescapeName maps it back
	}
	return b.String()
}

// unescapeName reverses escapeName; ok is false for names escapeName does
// not produce (so foreign entries in tasks/ are never mistaken for tasks).
func unescapeName(name string) (string, bool) {
	if name == "%" {
		return "", true
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		if name[i] != '%' {
			b.WriteByte(name[i])
			continue
		}
		if i+2 >= len(name) {
			return "", false
		}
		v, err := strconv.ParseUint(name[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(v))
		i += 2
	}
	s := b.String()
	return s, escapeName(s) == name
}

// taskDirName is the name of a task's directory under tasks/.
func taskDirName(id string) string {
	if n := escapeName(id); len(n) <= maxEscapedLen {
		return n
	}
	sum := sha256.Sum256([]byte(id))
	return hashedPrefix + hex.EncodeToString(sum[:])
}

func (e *Executor) taskDir(id string) string {
	return filepath.Join(e.cfg.tasksDir(), taskDirName(id))
}

// taskIDOf tells which task a directory under tasks/ belongs to: from its
// name, or from its task.json when the name is a hash.
func taskIDOf(dir string) (string, bool) {
	name := filepath.Base(dir)
	if !strings.HasPrefix(name, hashedPrefix) {
		return unescapeName(name)
	}
	b, err := os.ReadFile(filepath.Join(dir, fileTask))
	if err != nil {
		return "", false
	}
	var t executor.Task
	if json.Unmarshal(b, &t) != nil || taskDirName(t.ID) != name {
		return "", false
	}
	return t.ID, true
}

// pidFile records who runs a task, or that nobody ever will.
type pidFile struct {
	Pid       int    `json:"pid,omitempty"`
	Pgid      int    `json:"pgid,omitempty"`
	StartTime uint64 `json:"startTime,omitempty"` // /proc/<pid>/stat field 22
	BootID    string `json:"bootId,omitempty"`
	PidNS     string `json:"pidNs,omitempty"`
	Host      string `json:"host,omitempty"`
	// Launcher is the pid of the scheduler process that started the task.
	Launcher int `json:"launcher,omitempty"`
	// AliveLock: the wrapper holds fileAlive's lock while it lives, so its
	// liveness can be told from any PID namespace.
	AliveLock bool `json:"aliveLock,omitempty"`
	// NeverStarted: the launcher did not start the task within StartGrace
	// (or Kill came first); Reason says who gave up.
	NeverStarted bool      `json:"neverStarted,omitempty"`
	Reason       string    `json:"reason,omitempty"`
	Time         time.Time `json:"time"`
	// Deadline is when the task's Timeout runs out, counted from Time, its
	// start; zero: no timeout. It is here because the pid file is written
	// once, exclusively, when the task starts: every executor that adopts
	// the task enforces the same deadline, whenever it takes over.
	Deadline time.Time `json:"deadline,omitzero"`
}

// timeout is the task's Timeout as its deadline records it.
func (p pidFile) timeout() time.Duration { return p.Deadline.Sub(p.Time) }

// errCorrupt marks a state file that exists but cannot be parsed.
var errCorrupt = errors.New("corrupt state file")

func readPidFile(dir string) (pidFile, error) {
	var p pidFile
	b, err := readSmall(filepath.Join(dir, filePid))
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("%w: %s: %v", errCorrupt, filePid, err)
	}
	return p, nil
}

// openRead opens path for reading with plain system calls. os.Open also
// registers the file with the runtime's poller (three more system calls,
// all failing for a regular file), which is most of what opening the tiny
// files of a task directory and of /proc costs: judge opens several per
// task, and a new term judges every task. O_NONBLOCK: a FIFO in their
// place does not block the open.
func openRead(path string) (int, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
		if err == nil {
			return fd, nil
		}
		if err != syscall.EINTR {
			return -1, &fs.PathError{Op: "open", Path: path, Err: err}
		}
	}
}

// readSmall reads a whole file opened with openRead (as os.ReadFile, but
// without the poller and the fstat, for the small state files judge
// reads).
func readSmall(path string) ([]byte, error) {
	fd, err := openRead(path)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	b := make([]byte, 0, 512)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := syscall.Read(fd, b[len(b):cap(b)])
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		case n == 0:
			return b, nil
		}
		b = b[:len(b)+n]
	}
}

// tempName is a unique name for a file that is renamed or linked into
// place, so that concurrent writers never share one.
func tempName(base string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return base + ".tmp." + hex.EncodeToString(b[:])
}

// writeAtomic replaces path with data: readers see the old file or the new
// one, never a part.
func writeAtomic(path string, data []byte) error {
	tmp := tempName(path)
	if err := os.WriteFile(tmp, data, 0o640); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// writeExclusive creates path with data unless it exists; created says
// whether this call made it. link(2) of a complete temporary file makes the
// creation both exclusive and atomic. Where the file system cannot link, it
// falls back to O_EXCL, whose readers may briefly see a partial file (they
// treat an unparsable young pid file as "being written").
func writeExclusive(path string, data []byte) (created bool, err error) {
	tmp := tempName(path)
	if err := os.WriteFile(tmp, data, 0o640); err != nil {
		return false, err
	}
	defer func() { _ = os.Remove(tmp) }()
	err = os.Link(tmp, path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrExist):
		return false, nil
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.ENOTSUP), errors.Is(err, syscall.EOPNOTSUPP):
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		_, werr := f.Write(data)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		return werr == nil, werr
	default:
		return false, err
	}
}

// judgement is what the files of a task directory say about the task.
type judgement struct {
	state    executor.State
	message  string
	exitCode int
	pid      *pidFile // set once the task was started
	// stop of a RUNNING task: a kill or timeout decided, not yet done.
	stop *stop
}

func (j judgement) terminal() bool { return j.state.Terminal() }

// stateRank orders states so that a stale judgement never overtakes a
// newer one: STAGING < RUNNING < terminal.
func stateRank(s executor.State) int {
	switch s {
	case executor.StateStaging:
		return 0
	case executor.StateRunning:
		return 1
	}
	return 2
}

func notExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// judge reads a task directory and says what became of the task. It has one
// side effect: a directory left without a pid file for longer than
// StartGrace gets a "never started" pid file, created exclusively, so that
// the verdict is the same for every executor and a launcher that was only
// slow learns it lost (see start).
func (e *Executor) judge(dir string) (judgement, error) { return e.judgeIn(dir, nil) }

// judgeIn is judge reading /proc through c (see procCache).
func (e *Executor) judgeIn(dir string, c *procCache) (judgement, error) {
	fi, err := os.Stat(dir)
	if notExist(err) {
		return judgement{state: executor.StateUnknown, message: "no such task"}, nil
	}
	if err != nil {
		return judgement{}, err
	}
	if msg, err := readSmall(filepath.Join(dir, fileFailed)); err == nil {
		return judgement{state: executor.StateFailed, message: string(msg)}, nil
	} else if !notExist(err) {
		return judgement{}, err
	}
	killed, err := os.Stat(filepath.Join(dir, fileKilled))
	if err != nil && !notExist(err) {
		return judgement{}, err
	}
	timedOut, err := os.Stat(filepath.Join(dir, fileTimedOut))
	if err != nil && !notExist(err) {
		return judgement{}, err
	}

	p, err := readPidFile(dir)
	switch {
	case notExist(err):
		if time.Since(fi.ModTime()) < e.cfg.StartGrace {
			return judgement{state: executor.StateStaging}, nil
		}
		// Claimed but not started within StartGrace: its launcher died
		// between claim and start, or is stuck. Give up on it for good.
		if _, err := e.markNeverStarted(dir, "no pid file after start grace"); err != nil {
			return judgement{}, err
		}
		if p, err = readPidFile(dir); err != nil {
			return judgement{}, err
		}
	case errors.Is(err, errCorrupt):
		// The non-linking fallback of writeExclusive may be mid-write.
		if pfi, serr := os.Stat(filepath.Join(dir, filePid)); serr == nil && time.Since(pfi.ModTime()) < e.cfg.StartGrace {
			return judgement{state: executor.StateStaging}, nil
		}
		return judgement{state: executor.StateLost, message: err.Error()}, nil
	case err != nil:
		return judgement{}, err
	}
	if p.NeverStarted {
		if killed != nil {
			return judgement{state: executor.StateKilled, message: "killed before it started", pid: &p}, nil
		}
		return judgement{state: executor.StateLost, message: "never started: " + p.Reason, pid: &p}, nil
	}

	stop := stopOf(killed, timedOut, p)

	// Liveness first, then the exit file: the wrapper writes the exit file
	// before it exits, so a process found dead has written it if it ever
	// will. The other order would mistake a task that has just finished
	// for a lost one.
	live := e.host.liveness(dir, p, c)
	code, exitMod, err := readExit(dir)
	switch {
	case err == nil:
		if stop != nil && !stop.at.After(exitMod) {
			return judgement{state: stop.state, message: stop.message, exitCode: code, pid: &p}, nil
		}
		if code == 0 {
			return judgement{state: executor.StateFinished, pid: &p}, nil
		}
		msg := fmt.Sprintf("exit code %d", code)
		tail := stderrTail(filepath.Join(dir, fileStderr), stderrExcerpt)
		if tail == "" {
			// Just rotated: the tail is in the previous generation.
			tail = stderrTail(filepath.Join(dir, fileStderr+".1"), stderrExcerpt)
		}
		if tail != "" {
			msg += ": " + tail
		}
		return judgement{state: executor.StateFailed, message: msg, exitCode: code, pid: &p}, nil
	case errors.Is(err, errCorrupt):
		return judgement{state: executor.StateFailed, message: err.Error(), exitCode: -1, pid: &p}, nil
	case !notExist(err):
		return judgement{}, err
	}

	switch live {
	case procAlive, procUncertain:
		// procUncertain: started in another PID namespace; only its exit
		// file can tell, and a kill or a timeout works through its marker.
		return judgement{state: executor.StateRunning, pid: &p, stop: stop}, nil
	case procRebooted:
		if stop != nil {
			return judgement{state: stop.state, message: stop.message, pid: &p}, nil
		}
		return judgement{state: executor.StateLost, message: "host rebooted while the task ran", pid: &p}, nil
	default:
		if stop != nil {
			return judgement{state: stop.state, message: stop.message, pid: &p}, nil
		}
		return judgement{state: executor.StateLost, message: "process vanished", pid: &p}, nil
	}
}

// stop is why the executor stopped a started task: a kill or its timeout.
type stop struct {
	state   executor.State // KILLED or TIMED_OUT
	message string
	at      time.Time // when it was decided: its marker's time
}

// stopOf reads a started task's stop markers (each nil when it is not
// there). The first one written decides: a task stopped for its timeout
// that a user kills while it goes down timed out, and one being killed
// that passes its deadline meanwhile was killed. Nil when neither is there.
func stopOf(killed, timedOut fs.FileInfo, p pidFile) *stop {
	var s *stop
	if killed != nil {
		s = &stop{state: executor.StateKilled, message: "killed", at: killed.ModTime()}
	}
	if timedOut != nil && (s == nil || timedOut.ModTime().Before(s.at)) {
		msg := "timed out"
		if !p.Deadline.IsZero() {
			msg = fmt.Sprintf("timed out after %v", p.timeout())
		}
		s = &stop{state: executor.StateTimedOut, message: msg, at: timedOut.ModTime()}
	}
	return s
}

// stopAsked returns when the first of the task's stop markers was written;
// ok is false when there is none.
func stopAsked(dir string) (at time.Time, ok bool) {
	for _, name := range []string{fileKilled, fileTimedOut} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err == nil && (!ok || fi.ModTime().Before(at)) {
			at, ok = fi.ModTime(), true
		}
	}
	return at, ok
}

// markNeverStarted claims the pid file for "nobody will ever start this
// task"; created is false when a launcher (or another executor) was first.
func (e *Executor) markNeverStarted(dir, reason string) (created bool, err error) {
	b, err := json.Marshal(pidFile{NeverStarted: true, Reason: reason, Host: e.cfg.Host, Launcher: os.Getpid(), Time: time.Now().UTC()})
	if err != nil {
		return false, err
	}
	created, err = writeExclusive(filepath.Join(dir, filePid), b)
	if created {
		e.log.Warn("task never started", "task_dir", dir, "reason", reason)
	}
	return created, err
}

// readExit reads the wrapper's exit file.
func readExit(dir string) (code int, mod time.Time, err error) {
	path := filepath.Join(dir, fileExit)
	b, err := readSmall(path)
	if err != nil {
		return 0, time.Time{}, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, time.Time{}, err
	}
	code, err = strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fi.ModTime(), fmt.Errorf("%w: %s: %q", errCorrupt, fileExit, b)
	}
	return code, fi.ModTime(), nil
}

// stderrTail returns the last whole lines of a file, at most max bytes, for
// a FAILED status's message.
func stderrTail(path string, limit int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-limit, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return ""
	}
	b = bytes.TrimRight(b, " \t\r\n")
	if off > 0 {
		// Drop the partial first line, unless it is all there is.
		if i := bytes.IndexByte(b, '\n'); i >= 0 && i+1 < len(b) {
			b = b[i+1:]
		}
	}
	// The cut may split a rune; the message must stay valid UTF-8 (JSON).
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// terminalTime approximates when a terminal task ended: the newest change
// in its directory. Retention counts from there.
func terminalTime(dir string) time.Time {
	var t time.Time
	if fi, err := os.Stat(dir); err == nil {
		t = fi.ModTime()
	}
	entries, _ := os.ReadDir(dir)
	for _, de := range entries {
		if fi, err := de.Info(); err == nil && fi.ModTime().After(t) {
			t = fi.ModTime()
		}
	}
	return t
}
