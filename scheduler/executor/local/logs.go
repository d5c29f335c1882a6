package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hasched/hasched/scheduler/model"
)

// Reading a task's output while the executor caps it (output.go).
//
// A stream is two files: <stream>.1, the generation before, and <stream>,
// which the rotation truncates in place after copying its last bytes to a
// new <stream>.1. A reader that follows the stream by offset would miss
// what was written between its last read and the rotation, so the rotation
// records, in <stream>.1.at, which file the new generation is (its inode),
// where in the old stream it ended and a sequence number. The reader takes
// a shared flock on the stream around each read (rotation holds an
// exclusive one, and skips a poll rather than wait), so a rotation never
// happens in the middle of one; between two reads it recognises a rotation
// by the inode of <stream>.1, and emits from the new generation exactly the
// bytes after its offset. Where that cannot be told (the reader fell a
// whole generation behind, two rotations came between two reads, or the
// record is missing) it says so in the stream, in a line of its own.

// Errors of OpenLog, for errors.Is.
var (
	// ErrNoLog: this work directory has no task of that id (it ran
	// elsewhere, or its directory was removed after Retention).
	ErrNoLog = fmt.Errorf("%w: no log of the task in this work directory", model.ErrNotFound)
)

// Bounds of LogOptions.
const (
	// MaxTailLines bounds LogOptions.TailLines.
	MaxTailLines = model.MaxLogTailLines
	// DefaultLogPoll is how often a followed log is checked for growth.
	DefaultLogPoll = 250 * time.Millisecond
	// rotationSuffix names a stream's rotation record.
	rotationSuffix = ".1.at"
	// lockRetry is the pause before a read tries the stream's lock again
	// while a rotation holds it.
	lockRetry = 10 * time.Millisecond
)

// LogOptions says what OpenLog reads.
type LogOptions struct {
	// Stream is model.StreamStdout (default) or model.StreamStderr.
	Stream string
	// TailLines, if positive, starts at the last TailLines lines (at most
	// MaxTailLines) instead of the oldest output kept.
	TailLines int
	// Follow keeps reading as the task writes, until it has ended and all
	// it wrote is read, or the context ends. Without it the reader ends at
	// the output there was when it was opened.
	Follow bool
	// Poll is how often a followed stream is checked (DefaultLogPoll).
	Poll time.Duration
}

// rotation is a stream's rotation record, <stream>.1.at.
type rotation struct {
	// Ino is the inode of the <stream>.1 the rotation made.
	Ino uint64 `json:"ino"`
	// End is the stream's size when it was copied: the generation holds
	// the stream's bytes up to End.
	End int64 `json:"end"`
	// Seq counts the stream's rotations.
	Seq uint64 `json:"seq"`
}

// writeRotation records the rotation of path whose new generation is the
// file tmp (not yet renamed), the stream having been size bytes.
func writeRotation(path string, tmp *os.File, size int64) error {
	fi, err := os.Stat(tmp.Name())
	if err != nil {
		return err
	}
	prev, _ := readRotation(path)
	b, err := json.Marshal(rotation{Ino: inode(fi), End: size, Seq: prev.Seq + 1})
	if err != nil {
		return err
	}
	return writeAtomic(path+rotationSuffix, b)
}

func readRotation(path string) (rotation, error) {
	var r rotation
	b, err := os.ReadFile(path + rotationSuffix)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return rotation{}, fmt.Errorf("%w: %s: %v", errCorrupt, filepath.Base(path)+rotationSuffix, err)
	}
	return r, nil
}

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// fileID tells one <stream>.1 from the next: an inode number is reused
// as soon as the rename frees it, so its change time (which the rename
// sets) goes with it.
type fileID struct {
	ino   uint64
	ctime syscall.Timespec
}

func idOf(fi os.FileInfo) fileID {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fileID{ino: st.Ino, ctime: st.Ctim}
	}
	return fileID{}
}

// LogReader reads one stream of a task's output (see OpenLog). It is not
// safe for concurrent use.
type LogReader struct {
	ctx    context.Context
	dir    string
	path   string // the stream
	follow bool
	poll   time.Duration
	host   hostIdentity

	cur *os.File // the stream; nil until it exists
	off int64    // read of cur's current generation
	// limit, if not negative, is where a reader without Follow stops in
	// cur's current generation.
	limit int64
	// ino1 and seq are the generation <stream>.1 this reader accounted
	// for; seqKnown says whether seq came from a matching record.
	ino1     fileID
	seq      uint64
	seqKnown bool
	// pending is read before cur: the generation before, or its part this
	// reader has not read yet, and any note about lost output.
	pending io.Reader
	gen1    *os.File // pending's file, closed once read

	ended bool // the task was seen ended; one more pass to the end
}

// OpenLog opens the stream of the task with id taskID kept in workDir (a
// local executor's or a worker's work directory): ErrNoLog if there is no
// such task there, model.ErrInvalid for an id TaskID could not have made
// or an unknown stream. ctx bounds every later Read, which returns its
// error once it ends.
func OpenLog(ctx context.Context, workDir, taskID string, opts LogOptions) (*LogReader, error) {
	if err := model.CheckTaskID(taskID); err != nil {
		return nil, err
	}
	switch opts.Stream {
	case "":
		opts.Stream = model.StreamStdout
	case model.StreamStdout, model.StreamStderr:
	default:
		return nil, fmt.Errorf("%w: stream %q: want %s or %s", model.ErrInvalid, opts.Stream, model.StreamStdout, model.StreamStderr)
	}
	if opts.TailLines < 0 || opts.TailLines > MaxTailLines {
		return nil, fmt.Errorf("%w: tail %d: want 0 to %d lines", model.ErrInvalid, opts.TailLines, MaxTailLines)
	}
	if opts.Poll <= 0 {
		opts.Poll = DefaultLogPoll
	}
	dir := filepath.Join(Config{WorkDir: workDir}.tasksDir(), taskDirName(taskID))
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return nil, ErrNoLog
	}
	if id, ok := taskIDOf(dir); ok && id != taskID {
		return nil, ErrNoLog // a hashed name of another id
	}
	r := &LogReader{
		ctx: ctx, dir: dir, path: filepath.Join(dir, opts.Stream),
		follow: opts.Follow, poll: opts.Poll, host: currentHost(), limit: -1,
	}
	if err := r.start(opts.TailLines); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// openStream opens the stream file if it exists (the task may not have
// started yet).
func (r *LogReader) openStream() error {
	if r.cur != nil {
		return nil
	}
	f, err := os.OpenFile(r.path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if notExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return fmt.Errorf("%s is not a regular file", r.path)
	}
	r.cur = f
	return nil
}

// lock takes the shared lock on the stream, waiting out a rotation; the
// returned func releases it.
func (r *LogReader) lock() (func(), error) {
	for {
		err := syscall.Flock(int(r.cur.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(r.cur.Fd()), syscall.LOCK_UN) }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return nil, fmt.Errorf("lock %s: %w", r.path, err)
		}
		select {
		case <-r.ctx.Done():
			return nil, r.ctx.Err()
		case <-time.After(lockRetry):
		}
	}
}

// openGen1 opens <stream>.1 with its identity; nil if there is none.
func (r *LogReader) openGen1() (*os.File, fileID, int64, error) {
	f, err := os.OpenFile(r.path+".1", os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if notExist(err) {
		return nil, fileID{}, 0, nil
	}
	if err != nil {
		return nil, fileID{}, 0, err
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fileID{}, 0, fmt.Errorf("%s.1 is not a regular file", r.path)
	}
	return f, idOf(fi), fi.Size(), nil
}

// start takes the snapshot the reader begins with: both generations,
// consistent under the stream's lock, and where the tail begins in them.
func (r *LogReader) start(tail int) error {
	if err := r.openStream(); err != nil {
		return err
	}
	if r.cur == nil {
		// Not started yet: everything it writes is new.
		if !r.follow {
			r.limit = 0
		}
		return nil
	}
	unlock, err := r.lock()
	if err != nil {
		return err
	}
	defer unlock()
	gen1, ino1, size1, err := r.openGen1()
	if err != nil {
		return err
	}
	fi, err := r.cur.Stat()
	if err != nil {
		if gen1 != nil {
			gen1.Close()
		}
		return err
	}
	size0 := fi.Size()
	if !r.follow {
		r.limit = size0
	}
	rot, rerr := readRotation(r.path)
	switch {
	case gen1 != nil:
		r.ino1 = ino1
		r.seq, r.seqKnown = rot.Seq, rerr == nil && rot.Ino == ino1.ino
	case notExist(rerr):
		r.seqKnown = true // never rotated: the first rotation is 1
	}
	from1, from0 := int64(0), int64(0) // where reading begins in each
	if tail > 0 {
		from1, from0, err = tailStart(gen1, size1, r.cur, size0, tail)
		if err != nil {
			if gen1 != nil {
				gen1.Close()
			}
			return err
		}
	}
	r.off = from0
	if gen1 != nil && from1 < size1 {
		r.gen1, r.pending = gen1, io.NewSectionReader(gen1, from1, size1-from1)
	} else if gen1 != nil {
		gen1.Close()
	}
	return nil
}

// tailStart finds where the last n lines of gen1 (size1 bytes, may be
// nil) followed by cur (size0 bytes) begin: the offset in gen1 (size1 if
// they begin in cur) and in cur. A last line without its newline counts.
func tailStart(gen1 io.ReaderAt, size1 int64, cur io.ReaderAt, size0 int64, n int) (int64, int64, error) {
	if gen1 == nil {
		size1 = 0
	}
	total := size1 + size0
	at := func(p []byte, off int64) error {
		// p lies within one file or spans the boundary.
		for len(p) > 0 {
			var (
				k   int
				err error
			)
			if off < size1 {
				m := min(int64(len(p)), size1-off)
				k, err = gen1.ReadAt(p[:m], off)
			} else {
				k, err = cur.ReadAt(p, off-size1)
			}
			if k == 0 && err != nil {
				return err
			}
			p, off = p[k:], off+int64(k)
		}
		return nil
	}
	// The last line's own newline ends it; it starts no line after it.
	pos := total
	if total > 0 {
		var last [1]byte
		if err := at(last[:], total-1); err != nil {
			return 0, 0, err
		}
		if last[0] == '\n' {
			pos--
		}
	}
	buf := make([]byte, 32<<10)
	lines := 0
	for pos > 0 {
		chunk := min(int64(len(buf)), pos)
		b := buf[:chunk]
		if err := at(b, pos-chunk); err != nil {
			return 0, 0, err
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != '\n' {
				continue
			}
			if lines++; lines == n {
				start := pos - chunk + int64(i) + 1
				if start < size1 {
					return start, 0, nil
				}
				return size1, start - size1, nil
			}
		}
		pos -= chunk
	}
	return 0, 0, nil
}

// Read reads the stream: the generation before first, then the current
// one. With Follow it waits for more until the task has ended and its
// output is read (then io.EOF), or the context ends (its error).
func (r *LogReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if err := r.ctx.Err(); err != nil {
			return 0, err
		}
		n, err := r.readOnce(p)
		if n > 0 || err != nil {
			return n, err
		}
		if r.pending != nil {
			continue // a rotation was found: its generation is next
		}
		if !r.follow || r.ended {
			return 0, io.EOF
		}
		if r.taskEnded() {
			// What it wrote before it ended is there now: one more pass.
			r.ended = true
			continue
		}
		select {
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		case <-time.After(r.poll):
		}
	}
}

// readOnce reads what is there now: the pending generation, or the
// current one from the offset, after checking for a rotation. 0, nil when
// there is nothing (yet).
func (r *LogReader) readOnce(p []byte) (int, error) {
	if r.pending != nil {
		n, err := r.pending.Read(p)
		if errors.Is(err, io.EOF) {
			r.dropPending()
			if n == 0 {
				return r.readOnce(p)
			}
			err = nil
		}
		return n, err
	}
	if err := r.openStream(); err != nil || r.cur == nil {
		return 0, err
	}
	if r.limit >= 0 && r.off >= r.limit {
		return 0, nil
	}
	unlock, err := r.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	if rotated, err := r.checkRotation(); err != nil || rotated {
		return 0, err
	}
	want := int64(len(p))
	if r.limit >= 0 {
		want = min(want, r.limit-r.off)
	}
	n, err := r.cur.ReadAt(p[:want], r.off)
	r.off += int64(n)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

// checkRotation, under the stream's lock, looks for a rotation since the
// last read and, if there was one, makes pending what this reader has not
// read of the new generation and starts over at the stream's beginning.
func (r *LogReader) checkRotation() (bool, error) {
	fi, err := os.Lstat(r.path + ".1")
	switch {
	case notExist(err):
		return r.checkTruncation()
	case err != nil:
		return false, err
	case idOf(fi) == r.ino1 && !r.rotatedSince():
		return r.checkTruncation()
	}
	gen1, ino1, size1, err := r.openGen1()
	if err != nil || gen1 == nil {
		return false, err
	}
	rot, rerr := readRotation(r.path)
	var note string
	from := int64(0)
	switch {
	case rerr != nil || rot.Ino != ino1.ino:
		note = "output was rotated; some of it may be missing or repeated here"
	case r.seqKnown && rot.Seq != r.seq+1:
		note = fmt.Sprintf("output was rotated %d times between two reads; some of it is missing here", rot.Seq-r.seq)
	case rot.End-size1 > r.off:
		note = fmt.Sprintf("%d bytes of output were rotated away before they could be read", rot.End-size1-r.off)
	default:
		from = r.off - (rot.End - size1)
	}
	var parts []io.Reader
	if note != "" {
		parts = append(parts, bytes.NewReader([]byte("\n[hasched: "+note+"]\n")))
	}
	parts = append(parts, io.NewSectionReader(gen1, from, max(size1-from, 0)))
	r.dropPending()
	r.gen1, r.pending = gen1, io.MultiReader(parts...)
	r.ino1, r.off = ino1, 0
	r.seq, r.seqKnown = rot.Seq, rerr == nil && rot.Ino == ino1.ino
	if !r.follow {
		// The snapshot ended in the old generation.
		r.limit = 0
	}
	return true, nil
}

// rotatedSince tells from the rotation record whether a rotation came
// since the generation this reader accounted for, in case the change time
// is too coarse to tell two generations of one inode number apart.
func (r *LogReader) rotatedSince() bool {
	if !r.seqKnown {
		return false
	}
	rot, err := readRotation(r.path)
	return err == nil && rot.Seq != r.seq
}

// checkTruncation notices a stream cut shorter than what was read without
// a rotation (by hand, or by a rotation that left no generation).
func (r *LogReader) checkTruncation() (bool, error) {
	fi, err := r.cur.Stat()
	if err != nil {
		return false, err
	}
	if fi.Size() >= r.off {
		return false, nil
	}
	r.pending = bytes.NewReader([]byte("\n[hasched: output was truncated]\n"))
	r.off = 0
	if !r.follow {
		r.limit = 0
	}
	return true, nil
}

func (r *LogReader) dropPending() {
	r.pending = nil
	if r.gen1 != nil {
		r.gen1.Close()
		r.gen1 = nil
	}
}

// taskEnded tells whether the task has ended for good: its exit or failed
// file is written, it never started, its process is gone, or its
// directory was removed.
func (r *LogReader) taskEnded() bool {
	for _, name := range []string{fileExit, fileFailed} {
		if _, err := os.Stat(filepath.Join(r.dir, name)); err == nil {
			return true
		}
	}
	p, err := readPidFile(r.dir)
	if notExist(err) {
		_, derr := os.Stat(r.dir)
		return notExist(derr)
	}
	if err != nil {
		return false
	}
	if p.NeverStarted {
		return true
	}
	switch r.host.liveness(r.dir, p, nil) {
	case procDead, procRebooted:
		return true
	}
	return false
}

// Close releases the reader's files.
func (r *LogReader) Close() error {
	r.dropPending()
	if r.cur != nil {
		r.cur.Close()
		r.cur = nil
	}
	return nil
}
