package bench

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
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
	// second: enough to find where a leader stops keeping up (issue 11
	// asks for 2,000 a second on etcd), bounded so that a typo does not
	// register a flood of every-second jobs.
	MaxFireJobs     = 5000
	DefaultDuration = 10 * time.Second
	MinDuration     = time.Second
	MaxDuration     = 10 * time.Minute
)

// defaultNamespace is the namespace of a URL without one, as the backends
// have it.
const defaultNamespace = "hasched"

// ErrInvalidConfig is a Config the bench refuses; nothing was written. The
// error is a *ConfigError naming the field.
var ErrInvalidConfig = errors.New("bench: invalid configuration")

// ConfigError is one field of a Config refused, for a caller that names it
// its own way (a command line's flag).
type ConfigError struct {
	Field  string // the Config field: "Jobs", "Concurrency", "FireJobs", "Duration" or "URL"
	Value  string // as given (a URL without credentials)
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("%v: %s %s: %s", ErrInvalidConfig, e.Field, e.Value, e.Reason)
}

func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

func invalid(field, value, reason string, args ...any) error {
	return &ConfigError{Field: field, Value: value, Reason: fmt.Sprintf(reason, args...)}
}

// Config configures Run; start from Defaults.
type Config struct {
	// URL is the coordinator, etcd://… or zk://… with its TLS and auth
	// parameters. The bench works in a namespace of its own: the URL's
	// namespace with a random suffix, removed at the end.
	URL string
	// Display is URL without credentials, for the report (URL's redacted
	// form if empty).
	Display string
	// Jobs is how many jobs are registered.
	Jobs int
	// Concurrency is how many HTTP clients register them at once, and how
	// many raw clients create their nodes.
	Concurrency int
	// FireJobs is how many jobs fire every second during Duration.
	FireJobs int
	// Duration is how long the fires are measured.
	Duration time.Duration
	// Logger receives the schedulers' and the bench's events (null if nil).
	Logger hclog.Logger
}

// Defaults is a Config with every number at its default, for url.
func Defaults(url string) Config {
	return Config{URL: url, Jobs: DefaultJobs, Concurrency: DefaultConcurrency, FireJobs: DefaultFireJobs, Duration: DefaultDuration}
}

// Validate checks every field, with a *ConfigError wrapping
// ErrInvalidConfig; it touches nothing on the network. A zero number is
// refused like any other out of bounds: it is a mistake, not a default.
func (cfg Config) Validate() (Config, error) {
	switch {
	case cfg.Jobs < 1 || cfg.Jobs > MaxJobs:
		return cfg, invalid("Jobs", strconv.Itoa(cfg.Jobs), "give 1 to %d", MaxJobs)
	case cfg.Concurrency < 1 || cfg.Concurrency > MaxConcurrency:
		return cfg, invalid("Concurrency", strconv.Itoa(cfg.Concurrency), "give 1 to %d", MaxConcurrency)
	case cfg.FireJobs < 1 || cfg.FireJobs > MaxFireJobs:
		return cfg, invalid("FireJobs", strconv.Itoa(cfg.FireJobs), "give 1 to %d", MaxFireJobs)
	case cfg.Duration < MinDuration || cfg.Duration > MaxDuration:
		return cfg, invalid("Duration", cfg.Duration.String(), "give %v to %v", MinDuration, MaxDuration)
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
		return "", "", invalid("URL", coord.RedactURL(raw), "does not parse as a URL")
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "etcd" && scheme != "zk" {
		return "", "", invalid("URL", coord.RedactURL(raw), "give etcd://host:2379/namespace or zk://host:2181/namespace")
	}
	if u.Host == "" {
		return "", "", invalid("URL", coord.RedactURL(raw), "names no servers")
	}
	base, err := coord.URLNamespace(u, defaultNamespace)
	if err != nil {
		return "", "", invalid("URL", coord.RedactURL(raw), "%v", err)
	}
	ns := base + "-bench-" + suffix
	if err := coord.ValidateNamespace(ns); err != nil {
		return "", "", invalid("URL", coord.RedactURL(raw), "namespace %q: %v", ns, err)
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
