package worker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/internal/defaults"
	"github.com/hasched/hasched/scheduler/executor/local"
	"github.com/hasched/hasched/scheduler/model"
)

// Defaults of Config's zero values.
const (
	DefaultDrainTimeout  = 60 * time.Second
	DefaultStampInterval = 250 * time.Millisecond
	DefaultOpTimeout     = 5 * time.Second
	DefaultRetryInterval = 500 * time.Millisecond
	// DefaultWatchdogCheck is how often the worker makes sure its watchdog
	// runs (it exits by itself once no deadline is ahead, and may crash).
	DefaultWatchdogCheck = 2 * time.Second
	// watchdogStartTimeout bounds the detaching watchdog command.
	watchdogStartTimeout = 10 * time.Second
	maxDrainTimeout      = 24 * time.Hour
)

// Config configures a Worker. Zero values take the defaults.
type Config struct {
	// Open opens a new session; required. The worker's sessions are its
	// own, apart from the scheduler's election: a worker lives and dies
	// by its registration.
	Open func(ctx context.Context) (coord.Coordinator, error)
	// Name identifies the worker across restarts: default the host name.
	Name string
	// Host is reported in statuses and the registration: default the host
	// name.
	Host string
	// CPUs and MemoryMB are the capacity offered to the leader: default
	// the host's (runtime.NumCPU, MemTotal of /proc/meminfo).
	CPUs     float64
	MemoryMB float64
	Labels   map[string]string
	// API is the process's advertised REST address.
	API string
	// WorkDir is the worker's own directory, required: the local
	// executor's tasks and apps, the incarnation file, the work-dir lock
	// and the watchdog's stamp. No two live processes share it (flock),
	// and no local executor other than the worker's may use it.
	WorkDir string
	Logger  hclog.Logger
	// Local tunes the local executor that runs the tasks; its WorkDir,
	// Host and Logger are the worker's.
	Local local.Config
	// DrainTimeout bounds how long Drain waits for TRANSIENT tasks.
	DrainTimeout time.Duration
	// WatchdogCommand starts the orphan watchdog detached (it must exit
	// once the watchdog runs): default this executable with "watchdog",
	// "--dir", WorkDir.
	WatchdogCommand []string
	// StampInterval is how often the watchdog's stamp is renewed.
	StampInterval time.Duration
	// OpTimeout bounds each coordinator call.
	OpTimeout time.Duration
	// RetryInterval is the pause before a failed session open or write is
	// tried again.
	RetryInterval time.Duration
	// WatchdogCheck is how often the worker checks that its watchdog runs.
	WatchdogCheck time.Duration
}

// Errors, for errors.Is.
var (
	// ErrInvalidConfig wraps every Config validation failure.
	ErrInvalidConfig = errors.New("worker: invalid config")
	// ErrWorkDirBusy: another live process holds the work directory.
	ErrWorkDirBusy = errors.New("worker: work directory in use by another process")
	// ErrRunning: Run was called while the worker runs.
	ErrRunning = errors.New("worker: already running")
	// ErrNotRunning: Drain was called while the worker does not run.
	ErrNotRunning = errors.New("worker: not running")
)

func (cfg Config) withDefaults() (Config, error) {
	if cfg.Open == nil {
		return cfg, fmt.Errorf("%w: Open is required", ErrInvalidConfig)
	}
	if cfg.WorkDir == "" {
		return cfg, fmt.Errorf("%w: WorkDir is required", ErrInvalidConfig)
	}
	abs, err := filepath.Abs(cfg.WorkDir)
	if err != nil {
		return cfg, fmt.Errorf("%w: WorkDir %q: %v", ErrInvalidConfig, cfg.WorkDir, err)
	}
	cfg.WorkDir = abs
	if cfg.Name == "" || cfg.Host == "" {
		h, err := os.Hostname()
		if err != nil {
			return cfg, fmt.Errorf("%w: no Name or Host and os.Hostname failed: %v", ErrInvalidConfig, err)
		}
		if cfg.Host == "" {
			cfg.Host = h
		}
		if cfg.Name == "" {
			// A host name may be a dotted FQDN longer than a worker name.
			cfg.Name = h
		}
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = float64(runtime.NumCPU())
	}
	if cfg.MemoryMB == 0 {
		mb, err := hostMemoryMB()
		if err != nil {
			return cfg, fmt.Errorf("%w: no MemoryMB and %v", ErrInvalidConfig, err)
		}
		cfg.MemoryMB = mb
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	check := model.Worker{Name: cfg.Name, Incarnation: "0000000000000000", Host: cfg.Host,
		CPUs: cfg.CPUs, MemoryMB: cfg.MemoryMB, Labels: cfg.Labels}
	if err := check.Check(); err != nil {
		return cfg, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if err := defaults.Durations(ErrInvalidConfig, []defaults.Duration{
		{Name: "DrainTimeout", V: &cfg.DrainTimeout, Default: DefaultDrainTimeout, Max: maxDrainTimeout},
		{Name: "StampInterval", V: &cfg.StampInterval, Default: DefaultStampInterval},
		{Name: "OpTimeout", V: &cfg.OpTimeout, Default: DefaultOpTimeout},
		{Name: "RetryInterval", V: &cfg.RetryInterval, Default: DefaultRetryInterval},
		{Name: "WatchdogCheck", V: &cfg.WatchdogCheck, Default: DefaultWatchdogCheck},
	}...); err != nil {
		return cfg, err
	}
	if len(cfg.WatchdogCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return cfg, fmt.Errorf("%w: no WatchdogCommand and os.Executable failed: %v", ErrInvalidConfig, err)
		}
		cfg.WatchdogCommand = []string{exe, "watchdog", "--dir", cfg.WorkDir}
	}
	cfg.Local.WorkDir = cfg.WorkDir
	cfg.Local.Host = cfg.Host
	cfg.Local.Logger = cfg.Logger
	if cfg.Local.KillGrace == 0 {
		cfg.Local.KillGrace = local.DefaultKillGrace
	}
	return cfg, nil
}

// hostMemoryMB reads MemTotal from /proc/meminfo.
func hostMemoryMB() (float64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/meminfo: MemTotal: %w", err)
		}
		// Whole MB: what placements count in, and what people read.
		return math.Floor(kb / 1024), nil
	}
	return 0, errors.New("/proc/meminfo: no MemTotal")
}
