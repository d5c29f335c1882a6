package bench

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/coord"
)

// Defaults and bounds of Config. Every number is bounded, so that no
// setting makes the bench write more than a cluster is meant to hold or run
// longer than an operator means to watch.
const (
	DefaultJobs        = 1000
	MaxJobs            = 1_000_000
	DefaultConcurrency = 8
	MaxConcurrency     = 256
	DefaultFireJobs    = 100
	// MaxFireJobs: each fires every second, so this many launches a
	// second, which a single leader cannot keep up with on any cluster.
	MaxFireJobs     = 1000
	DefaultDuration = 10 * time.Second
	MinDuration     = time.Second
	MaxDuration     = 10 * time.Minute
)

// defaultNamespace is the namespace of a URL without one, as the backends
// have it.
const defaultNamespace = "hasched"

// ErrInvalidConfig is a Config the bench refuses; nothing was written.
var ErrInvalidConfig = errors.New("bench: invalid configuration")

// Config configures Run.
type Config struct {
	// URL is the coordinator, etcd://… or zk://… with its TLS and auth
	// parameters. The bench works in a namespace of its own: the URL's
	// namespace with a random suffix, removed at the end.
	URL string
	// Display is URL without credentials, for the report (URL's redacted
	// form if empty).
	Display string
	// Jobs is how many jobs are registered (DefaultJobs if zero).
	Jobs int
	// Concurrency is how many HTTP clients register them at once, and how
	// many raw clients create their nodes (DefaultConcurrency if zero).
	Concurrency int
	// FireJobs is how many jobs fire every second during Duration
	// (DefaultFireJobs if zero).
	FireJobs int
	// Duration is how long the fires are measured (DefaultDuration if
	// zero).
	Duration time.Duration
	// Logger receives the schedulers' and the bench's events (null if nil).
	Logger hclog.Logger
}

// Validate fills in the defaults and checks every field; it touches
// nothing on the network.
func (cfg Config) Validate() (Config, error) {
	if cfg.Jobs == 0 {
		cfg.Jobs = DefaultJobs
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.FireJobs == 0 {
		cfg.FireJobs = DefaultFireJobs
	}
	if cfg.Duration == 0 {
		cfg.Duration = DefaultDuration
	}
	switch {
	case cfg.Jobs < 1 || cfg.Jobs > MaxJobs:
		return cfg, fmt.Errorf("%w: jobs %d: give 1 to %d", ErrInvalidConfig, cfg.Jobs, MaxJobs)
	case cfg.Concurrency < 1 || cfg.Concurrency > MaxConcurrency:
		return cfg, fmt.Errorf("%w: concurrency %d: give 1 to %d", ErrInvalidConfig, cfg.Concurrency, MaxConcurrency)
	case cfg.FireJobs < 1 || cfg.FireJobs > MaxFireJobs:
		return cfg, fmt.Errorf("%w: fire jobs %d: give 1 to %d", ErrInvalidConfig, cfg.FireJobs, MaxFireJobs)
	case cfg.Duration < MinDuration || cfg.Duration > MaxDuration:
		return cfg, fmt.Errorf("%w: duration %v: give %v to %v", ErrInvalidConfig, cfg.Duration, MinDuration, MaxDuration)
	}
	if _, _, err := benchURL(cfg.URL, "check"); err != nil {
		return cfg, err
	}
	if cfg.Display == "" {
		cfg.Display = coord.RedactURL(cfg.URL)
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return cfg, nil
}

// benchURL is raw with its namespace replaced by the URL's namespace and
// suffix, and that namespace. The query (TLS, credentials, timeouts) is
// kept as it is.
func benchURL(raw, suffix string) (string, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("%w: coordinator URL %s does not parse", ErrInvalidConfig, coord.RedactURL(raw))
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "etcd" && scheme != "zk" {
		return "", "", fmt.Errorf("%w: coordinator URL %s: give etcd://host:2379/namespace or zk://host:2181/namespace", ErrInvalidConfig, coord.RedactURL(raw))
	}
	if u.Host == "" {
		return "", "", fmt.Errorf("%w: coordinator URL %s names no servers", ErrInvalidConfig, coord.RedactURL(raw))
	}
	base, err := coord.URLNamespace(u, defaultNamespace)
	if err != nil {
		return "", "", fmt.Errorf("%w: coordinator URL %s: %v", ErrInvalidConfig, coord.RedactURL(raw), err)
	}
	ns := base + "-bench-" + suffix
	if err := coord.ValidateNamespace(ns); err != nil {
		return "", "", fmt.Errorf("%w: namespace %q: %v", ErrInvalidConfig, ns, err)
	}
	u.Path, u.RawPath = "/"+ns, ""
	return u.String(), ns, nil
}

// randomSuffix makes the bench's namespace its own: two benches, or a
// bench and a crashed one's leftovers, never share one.
func randomSuffix() (string, error) {
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("bench: random namespace suffix: %w", err)
	}
	return hex.EncodeToString(b), nil
}
