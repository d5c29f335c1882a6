package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/hasched/hasched/scheduler/apppkg"
)

const (
	// defaultFetchTimeout bounds a fetch-app run: download and unpacking.
	defaultFetchTimeout = 10 * time.Minute
	maxFetchTimeout     = 24 * time.Hour
)

// errFetchTimedOut is the cause of a fetch --timeout cut off.
var errFetchTimedOut = errors.New("fetch-app: --timeout passed")

// fetchAppFlags are fetch-app's flags as given.
type fetchAppFlags struct {
	url, checksum, dest string
	maxBytes            int64
	timeout             time.Duration
}

// newFetchAppCmd fetches an app package into a directory: the init
// container of a task's Pod on Kubernetes (scheduler/executor/kube) runs
// it, with the URL in $HASCHED_URL rather than on its command line.
func newFetchAppCmd() *cobra.Command {
	var f fetchAppFlags
	cmd := &cobra.Command{
		Use:   "fetch-app --url URL --dest DIR [--checksum sha256:HEX]",
		Short: "Fetch an app package and unpack it into a directory",
		Long: `Fetch an app package (an app's appURL: file, http or https) and unpack it
into --dest, as the local executor does for a task: checked against
--checksum if given, at most --max-bytes (its unpacked tree at most four
times that), tar, tar.gz and zip archives unpacked (no entry may land outside
--dest), anything else saved as one executable file. --dest must not exist or
be empty; it is filled all at once, or not at all.

On Kubernetes (serve --executor kubernetes --kube-fetch-image IMAGE), each task
of an app with a package gets an init container running this command in
IMAGE. The URL may hold a credential: give it as $HASCHED_URL rather than on
the command line. It is printed only without its user information and query.`,
		Example: `  # what the init container of a task's Pod runs (the URL in $HASCHED_URL)
  HASCHED_URL=https://repo.example/myapp-1.0.tar.gz \
    hasched fetch-app --dest /hasched/task/app \
      --checksum sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return fetchApp(cmd.Context(), f, cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.url, "url", "", "the app package's URL: file:///path, http:// or https:// (required)")
	fs.StringVar(&f.checksum, "checksum", "", `the package's expected SHA-256, "sha256:" and 64 lower-case hex digits (empty: not checked)`)
	fs.StringVar(&f.dest, "dest", "", "the directory to unpack into; it must not exist or be empty (required)")
	fs.Int64Var(&f.maxBytes, "max-bytes", apppkg.DefaultMaxBytes, fmt.Sprintf("the most bytes the package may have, up to %d", apppkg.MaxMaxBytes))
	fs.DurationVar(&f.timeout, "timeout", defaultFetchTimeout, "how long the download and unpacking may take in all (at most 24h)")
	return cmd
}

// fetchApp validates the flags, fetches into a temporary directory beside
// --dest and renames it into place.
func fetchApp(ctx context.Context, f fetchAppFlags, out io.Writer) error {
	if f.url == "" {
		return usagef("--url (or $%s) is required", envName("url"))
	}
	u, err := apppkg.ParseURL(f.url)
	if err != nil {
		return usagef("--url: %v", err)
	}
	if err := apppkg.CheckChecksum(f.checksum); err != nil {
		return usagef("--checksum: %v", err)
	}
	if f.dest == "" {
		return usagef("--dest is required")
	}
	if f.maxBytes < 1 || f.maxBytes > apppkg.MaxMaxBytes {
		return usagef("--max-bytes %d: want 1 to %d", f.maxBytes, apppkg.MaxMaxBytes)
	}
	if f.timeout <= 0 || f.timeout > maxFetchTimeout {
		return usagef("--timeout %v: want a positive duration up to %v", f.timeout, maxFetchTimeout)
	}
	dest, err := filepath.Abs(f.dest)
	if err != nil {
		return fmt.Errorf("--dest %s: %w", f.dest, err)
	}
	if err := checkEmptyDest(dest); err != nil {
		return err
	}
	// Downloads and the tree go beside dest, on its file system (the
	// Pod's emptyDir), so that filling dest is one rename.
	parent := filepath.Dir(dest)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("--dest %s: %w", dest, err)
	}
	tmp, err := os.MkdirTemp(parent, ".fetch-app-")
	if err != nil {
		return fmt.Errorf("--dest %s: %w", dest, err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	fetcher, err := apppkg.New(apppkg.Config{TempDir: tmp, MaxBytes: f.maxBytes})
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeoutCause(ctx, f.timeout, errFetchTimedOut)
	defer cancel()
	start := time.Now()
	dir, err := fetcher.Fetch(ctx, u, f.checksum)
	if err != nil {
		if errors.Is(context.Cause(ctx), errFetchTimedOut) {
			return fmt.Errorf("%w %s: not done within --timeout %v", apppkg.ErrFetch, apppkg.Redact(u), f.timeout)
		}
		return err
	}
	// The task's user may not be the fetch's: its directory is theirs to
	// enter (the files keep their archive's modes).
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("--dest %s: %w", dest, err)
	}
	// An empty dest goes (Remove fails on anything else), so that the
	// rename puts the whole tree in place at once.
	if err := os.Remove(dest); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("--dest %s: %w", dest, err)
	}
	if err := os.Rename(dir, dest); err != nil {
		return fmt.Errorf("--dest %s: %w", dest, err)
	}
	_, err = fmt.Fprintf(out, "fetched %s into %s in %v\n", apppkg.Redact(u), dest, time.Since(start).Round(time.Millisecond))
	return err
}

// checkEmptyDest refuses a dest that holds anything: it is not fetch-app's
// to overwrite.
func checkEmptyDest(dest string) error {
	fi, err := os.Stat(dest)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("--dest %s: %w", dest, err)
	}
	if !fi.IsDir() {
		return usagef("--dest %s exists and is not a directory", dest)
	}
	d, err := os.Open(dest)
	if err != nil {
		return fmt.Errorf("--dest %s: %w", dest, err)
	}
	defer d.Close()
	if names, _ := d.Readdirnames(1); len(names) > 0 {
		return usagef("--dest %s is not empty", dest)
	}
	return nil
}
