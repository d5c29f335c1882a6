package local

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// Task output: capped and rotated by whoever watches the task.
//
// A task's stdout and stderr are files it writes straight into (O_APPEND),
// not pipes to the scheduler: a pipe's reader is a process, and the
// scheduler process that launched a task is not the one that adopts it after
// a restart. A task whose reader died would get SIGPIPE (a DAEMON task
// killed by a scheduler restart) or block on a full pipe, and no later
// process can take over the read end of a pipe it never held. A rotating
// writer process in the task's own process group would survive, but it
// would have to be a binary of its own, which hasched does not ship.
//
// So the files stay, and the executor watching the task, any of them, in
// any term, caps them: each poll (PollInterval) a stream larger than
// MaxOutputBytes has its last MaxOutputBytes copied to <stream>.1 (one
// generation, replacing the previous) and is truncated to zero; the task's
// O_APPEND writes carry on at the new end. What this costs, and why it is
// acceptable: bytes written between the copy and the truncation are lost
// (the time of one ftruncate after the copy); between two polls a stream
// can overshoot by what the task writes in PollInterval; and while no
// scheduler leads nobody rotates, until the next term adopts the task. A
// stream is thus bounded by twice MaxOutputBytes plus one poll's output.
// Two executors (a closing one and its successor) never rotate a stream at
// once: rotation holds an flock on the stream, which task writes ignore.

// rotateOutput caps the task's stdout and stderr; errors are logged once
// per task by the caller's record.
func (e *Executor) rotateOutput(dir string) error {
	var errs []error
	for _, name := range []string{fileStdout, fileStderr} {
		if err := rotateStream(filepath.Join(dir, name), e.cfg.MaxOutputBytes); err != nil {
			errs = append(errs, fmt.Errorf("rotate %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// rotateStream moves the last limit bytes of a stream larger than limit to
// path.1 and empties the stream.
func rotateStream(path string, limit int64) error {
	fi, err := os.Lstat(path)
	if notExist(err) || (err == nil && fi.Size() <= limit) {
		return nil // the cheap test, every poll
	}
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	switch err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); {
	case errors.Is(err, syscall.EWOULDBLOCK):
		return nil // another executor rotates it right now
	case err != nil:
		return err
	}
	if fi, err = f.Stat(); err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	size := fi.Size()
	if size <= limit {
		return nil
	}
	tmp, err := os.OpenFile(tempName(path+".1"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	_, err = io.Copy(tmp, io.NewSectionReader(f, size-limit, limit))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// Where the generation ends in the stream, for readers that follow
		// it (logs.go). A failure only costs them exactness, never the
		// cap, so it does not stop the rotation.
		_ = writeRotation(path, tmp, size)
		err = os.Rename(tmp.Name(), path+".1")
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return f.Truncate(0)
}
