package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/model"
)

const logTaskID = "job@-@1700000000000@-@0@-@0"

// logTaskDir makes a task directory in a fresh work dir, as the executor
// would, with the given stdout and stdout.1.
func logTaskDir(t *testing.T, id, cur, prev string) (workDir, dir string) {
	t.Helper()
	workDir = t.TempDir()
	dir = filepath.Join(workDir, "tasks", taskDirName(id))
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, fileStdout), []byte(cur), 0o640); err != nil {
		t.Fatal(err)
	}
	if prev != "" {
		if err := os.WriteFile(filepath.Join(dir, fileStdout+".1"), []byte(prev), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return workDir, dir
}

func readLog(t *testing.T, workDir, id string, opts LogOptions) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	r, err := OpenLog(ctx, workDir, id, opts)
	if err != nil {
		t.Fatalf("OpenLog(%+v): %v", opts, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read (%+v): %v", opts, err)
	}
	return string(b)
}

// Ids that TaskID could not have made are refused before any path is
// built: no ../ or / reaches the file system, however it is spelt.
func TestOpenLogRefusesWhatIsNotATaskID(t *testing.T) {
	workDir, _ := logTaskDir(t, logTaskID, "secret\n", "")
	// A file a traversal would reach.
	if err := os.WriteFile(filepath.Join(workDir, "stdout"), []byte("outside\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{
		"", "..", "../stdout", "../../etc/passwd", "tasks/../..",
		"a/b@-@1700000000000@-@0@-@0", "..@-@1700000000000@-@0@-@0x", "/@-@1@-@0@-@0",
		"job@-@01700000000000@-@0@-@0", "job@-@1700000000000@-@+0@-@0", "job@-@1700000000000@-@0@-@0/..",
		"job\n@-@1700000000000@-@0@-@0",
	} {
		if _, err := OpenLog(context.Background(), workDir, id, LogOptions{}); !errors.Is(err, model.ErrInvalid) {
			t.Errorf("OpenLog(%q) = %v, want model.ErrInvalid", id, err)
		}
	}
	if _, err := OpenLog(context.Background(), workDir, "other@-@1700000000000@-@0@-@0", LogOptions{}); !errors.Is(err, ErrNoLog) || !errors.Is(err, model.ErrNotFound) {
		t.Errorf("unknown task: %v, want ErrNoLog (a model.ErrNotFound)", err)
	}
	for _, bad := range []LogOptions{{Stream: "../stdout"}, {Stream: "exit"}, {TailLines: -1}, {TailLines: MaxTailLines + 1}} {
		if _, err := OpenLog(context.Background(), workDir, logTaskID, bad); !errors.Is(err, model.ErrInvalid) {
			t.Errorf("OpenLog(%+v) = %v, want model.ErrInvalid", bad, err)
		}
	}
	// A job name that escapes to something else on disk still reads its own.
	odd := "a.b%2F..@-@1700000000000@-@0@-@0"
	oddDir, _ := logTaskDir(t, odd, "odd\n", "")
	if got := readLog(t, oddDir, odd, LogOptions{}); got != "odd\n" {
		t.Errorf("job name with escapes: %q", got)
	}
}

// A snapshot reads the generation before and the current one in order; a
// tail counts lines across both, the last line with or without its
// newline.
func TestOpenLogReadsBothGenerationsAndTails(t *testing.T) {
	workDir, dir := logTaskDir(t, logTaskID, "c\nd\n", "a\nb\n")
	for tail, want := range map[int]string{0: "a\nb\nc\nd\n", 1: "d\n", 2: "c\nd\n", 3: "b\nc\nd\n", 4: "a\nb\nc\nd\n", 100: "a\nb\nc\nd\n"} {
		if got := readLog(t, workDir, logTaskID, LogOptions{TailLines: tail}); got != want {
			t.Errorf("tail %d: %q, want %q", tail, got, want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, fileStdout), []byte("c\nd"), 0o640); err != nil {
		t.Fatal(err)
	}
	if got := readLog(t, workDir, logTaskID, LogOptions{TailLines: 1}); got != "d" {
		t.Errorf("tail 1 without a final newline: %q", got)
	}
	if got := readLog(t, workDir, logTaskID, LogOptions{Stream: model.StreamStderr}); got != "" {
		t.Errorf("stderr that was never written: %q", got)
	}
	// A long tail across the 32 KiB chunks of the scan.
	var prev, cur strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&prev, "prev line %05d with some padding to make it long enough\n", i)
		fmt.Fprintf(&cur, "cur line %05d with some padding to make it long enough\n", i)
	}
	workDir, _ = logTaskDir(t, logTaskID, cur.String(), prev.String())
	got := readLog(t, workDir, logTaskID, LogOptions{TailLines: 4000})
	if lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n"); len(lines) != 4000 || !strings.HasPrefix(lines[0], "prev line 02000") || !strings.HasPrefix(lines[3999], "cur line 02999") {
		t.Errorf("tail 4000 of 6000: %d lines, from %q", len(lines), lines[0])
	}
}

// readExactly reads n bytes of r, which must have them now.
func readExactly(t *testing.T, r io.Reader, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return string(b)
}

// A follower misses nothing and repeats nothing when the stream is
// rotated under it, whether it had read all, part or none of what the
// rotation moved; where it fell a generation behind it says so.
func TestFollowedLogCrossesRotationsExactly(t *testing.T) {
	workDir, dir := logTaskDir(t, logTaskID, "", "")
	path := filepath.Join(dir, fileStdout)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	write := func(lines int) string {
		var b strings.Builder
		for range lines {
			fmt.Fprintf(&b, "line %04d\n", n) // 10 bytes
			n++
		}
		if _, err := f.WriteString(b.String()); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	rotate := func(limit int64) {
		t.Helper()
		if err := rotateStream(path, limit); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	r, err := OpenLog(ctx, workDir, logTaskID, LogOptions{Follow: true, Poll: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	want := write(100)
	if got := readExactly(t, r, len(want)); got != want {
		t.Fatalf("before any rotation: %q", got)
	}
	// Read all, then rotated.
	rotate(500)
	want = write(10)
	if got := readExactly(t, r, len(want)); got != want {
		t.Fatalf("after a rotation of what was read: %q, want %q", got, want)
	}
	// Read part, then rotated: the rest comes from the generation.
	want = write(30)
	if got := readExactly(t, r, 100); got != want[:100] {
		t.Fatalf("part: %q", got)
	}
	rotate(250)
	more := write(5)
	if got := readExactly(t, r, 200+len(more)); got != want[100:]+more {
		t.Fatalf("after a rotation of what was partly read: %q, want %q", got, want[100:]+more)
	}
	// Nothing read, twice rotated: it says so, then goes on with the latest.
	write(50)
	rotate(100)
	write(50)
	rotate(100)
	last := write(3)
	br := bufio.NewReader(r)
	var got strings.Builder
	for !strings.HasSuffix(got.String(), last) {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading after two rotations: %v (so far %q)", err, got.String())
		}
		got.WriteString(line)
	}
	if !strings.Contains(got.String(), "[hasched: output was rotated 2 times between two reads") {
		t.Fatalf("two rotations between reads, not noted: %q", got.String())
	}
	// The task ends: the follower reads to the end and stops.
	tail := write(2)
	if err := os.WriteFile(filepath.Join(dir, fileExit), []byte("0\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != tail {
		t.Fatalf("after the task ended: %q, %v; want %q and the end", rest, err, tail)
	}
}

// A follower sees a real task's lines as it writes them, and ends when
// the task ends; its context ends a follow that would not.
func TestFollowedLogEndsWhenTheTaskEnds(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	e := newTestExec(t, cfg)
	gate := filepath.Join(t.TempDir(), "gate")
	e.launch(task(logTaskID, "echo one; "+waitForFile(gate)+"; echo two; echo err >&2"))

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	r, err := OpenLog(ctx, cfg.WorkDir, logTaskID, LogOptions{Follow: true, Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	br := bufio.NewReader(r)
	if line, err := br.ReadString('\n'); err != nil || line != "one\n" {
		t.Fatalf("first line: %q, %v", line, err)
	}
	if _, err := os.Stat(filepath.Join(e.taskDir(logTaskID), fileExit)); err == nil {
		t.Fatal("the task ended before its first line was read")
	}
	touch(t, gate)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "two\n" {
		t.Fatalf("rest: %q, %v; want two and the end", rest, err)
	}
	if got := readLog(t, cfg.WorkDir, logTaskID, LogOptions{Stream: model.StreamStderr}); got != "err\n" {
		t.Fatalf("stderr: %q", got)
	}

	// A task that never ends: the context ends the follow.
	e.launch(task("forever@-@1700000000000@-@0@-@0", "echo hi; sleep 30"))
	short, stop := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer stop()
	eventually(t, "the second task started", func() bool {
		_, err := os.Stat(filepath.Join(e.taskDir("forever@-@1700000000000@-@0@-@0"), filePid))
		return err == nil
	})
	r2, err := OpenLog(short, cfg.WorkDir, "forever@-@1700000000000@-@0@-@0", LogOptions{Follow: true, Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	b, err := io.ReadAll(r2)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(string(b), "hi") {
		t.Fatalf("follow of a running task: %q, %v; want its output, then the context's end", b, err)
	}
	if err := e.Kill(context.Background(), "forever@-@1700000000000@-@0@-@0"); err != nil {
		t.Fatal(err)
	}
}
