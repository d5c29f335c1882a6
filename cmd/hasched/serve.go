package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/coord/etcd"
	_ "github.com/hasched/hasched/coord/zk" // zk:// for --coord
	"github.com/hasched/hasched/scheduler"
	"github.com/hasched/hasched/scheduler/alert"
	"github.com/hasched/hasched/scheduler/api"
	"github.com/hasched/hasched/scheduler/console"
	"github.com/hasched/hasched/scheduler/events"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/executor/cluster"
	"github.com/hasched/hasched/scheduler/executor/local"
	"github.com/hasched/hasched/scheduler/mesos"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/worker"
)

// Shutdown bounds.
const (
	// stopTimeout bounds how long the scheduler may take to end its term
	// and resign after a signal.
	stopTimeout = 30 * time.Second
	// httpDrainTimeout bounds how long requests in flight may take to
	// finish.
	httpDrainTimeout = 10 * time.Second
)

// HTTP server limits; writes are bounded by the API's own request timeout
// (api.DefaultRequestTimeout), so WriteTimeout leaves room for it. Task
// log answers, which may be long, set a deadline per write instead.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = api.DefaultRequestTimeout + 15*time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

const coordEmbedded = "embedded"

// serveFlags are serve's flags as given.
type serveFlags struct {
	coord             string
	dataDir           string
	listen            string
	advertise         string
	executor          string
	workDir           string
	logLevel          string
	logJSON           bool
	authUser          string
	authPassword      string
	embeddedClientURL string
	embeddedPeerURL   string
	// apiSec: the REST API's other auth and TLS flags (apisecurity.go).
	apiSec apiSecurityFlags
	// alerts: --alerts-config (alerts.go).
	alerts alertFlags
	// history: run history's flags (history.go).
	history historyFlags
	// --executor cluster: this process's worker.
	worker         bool
	workerChanged  bool // --worker given explicitly
	workerName     string
	workerCPUs     float64
	workerMemoryMB float64
	workerLabels   string
	drainTimeout   time.Duration
	// --executor mesos
	mesosMaster          string
	mesosFailoverTimeout time.Duration
	mesosRole            string
	mesosUser            string
	mesosFrameworkName   string
	// --executor kubernetes (kube.go)
	kube kubeFlags
}

// serveConfig is serve's validated configuration.
type serveConfig struct {
	// embedded: run a single-member etcd in this process; else coordURL.
	embedded     bool
	coordURL     string
	coordDisplay string // coordURL without credentials
	dataDir      string
	etcdDir      string
	workDir      string
	listen       string
	listenHost   string
	// advertise is empty when it is derived from the bound address.
	advertise         string
	executor          string
	logLevel          hclog.Level
	logJSON           bool
	authUser          string
	authPassword      string
	embeddedClientURL string
	embeddedPeerURL   string
	// apiSec: the REST API's accounts and TLS (apisecurity.go).
	apiSec apiSecurityConfig
	// alerts are the --alerts-config receivers, their secrets read.
	alerts []alert.Receiver
	// history: run history (history.go).
	history historyConfig
	// mesos configures --executor mesos (its Logger is set by runServe).
	mesos mesos.Config
	// kube configures --executor kubernetes (kube.go).
	kube kubeSettings
	// worker: run tasks placed on this process (--executor cluster and
	// --worker); workerCfg's capacity is 0 for "the host's".
	worker       bool
	workerCfg    workerSettings
	drainTimeout time.Duration
}

// workerSettings are the worker's flags as validated.
type workerSettings struct {
	name     string
	cpus     float64
	memoryMB float64
	labels   map[string]string
}

func newServeCmd() *cobra.Command {
	return serveCommand(func(cmd *cobra.Command, cfg serveConfig) error {
		return runServe(cmd.Context(), cfg, cmd.ErrOrStderr(), nil)
	})
}

// serveCommand is serve with run called on the validated configuration
// (tests validate a command line with it, and run nothing).
func serveCommand(run func(*cobra.Command, serveConfig) error) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a scheduler process",
		Long: `Run a scheduler process. Every process of a cluster joins one leader election
on the coordinator: the leader schedules and launches jobs; standbys forward
writes to the leader, and the reads of apps and jobs too (the leader answers
those from memory; a standby answers them from the store when the leader does
not), and answer the other reads themselves. The REST API listens on --listen
for the life of the process, whether it leads or not.

The API listens on 127.0.0.1:8899 unless told otherwise. An address other
hosts can reach needs an account (--auth-user, its password from
--auth-password-file or $HASCHED_AUTH_PASSWORD); --tls-cert and --tls-key
serve it over https, and standbys then forward writes to the leader over
https too.

On SIGINT or SIGTERM a leader stops scheduling and resigns, so that a standby
takes over at once, and the process exits 0.`,
		Example: `  # one process, on an embedded etcd kept in ./data
  hasched serve

  # a cluster on etcd (run one per host), the API over https with an account
  HASCHED_AUTH_PASSWORD_FILE=/etc/hasched/password \
  hasched serve --coord etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379/hasched \
      --listen 10.0.0.1:8899 --auth-user root \
      --tls-cert /etc/hasched/api.pem --tls-key /etc/hasched/api-key.pem --tls-ca /etc/hasched/ca.pem

  # on ZooKeeper, configured through the environment
  HASCHED_COORD=zk://10.0.0.1:2181/hasched HASCHED_ADVERTISE=10.0.0.1:8899 hasched serve

  # tasks on Apache Mesos, the leading master found in ZooKeeper
  hasched serve --coord zk://10.0.0.1:2181/hasched --executor mesos \
      --mesos-master zk://10.0.0.1:2181,10.0.0.2:2181/mesos --mesos-role jobs

  # tasks as Kubernetes Pods, from a Deployment in the cluster (in-cluster
  # configuration); app packages (appURL) fetched by an init container in
  # hasched's image
  hasched serve --coord etcd://etcd:2379/hasched --executor kubernetes \
      --kube-namespace jobs --kube-image registry.local/jobs-base:1 \
      --kube-fetch-image hasched/hasched:1`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// A password in argv is visible to every user of the host; one
			// from the environment or a file is not (applyEnv does not
			// mark flags changed).
			f.apiSec.passwordOnCommandLine = cmd.Flags().Changed("auth-password")
			f.apiSec.readOnlyPasswordOnCommandLine = cmd.Flags().Changed("auth-readonly-password")
			f.history.urlOnCommandLine = cmd.Flags().Changed(flagHistoryPostgresURL)
			f.workerChanged = cmd.Flags().Changed("worker")
			cfg, err := f.validate()
			if err != nil {
				return err
			}
			// The API's passwords are read; tasks must not inherit them.
			dropAPISecretsFromEnv()
			dropHistorySecretFromEnv()
			return run(cmd, cfg)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.coord, "coord", coordEmbedded, "coordinator: embedded (a single-member etcd in this process, TLS with client certificates kept in <data-dir>/etcd/tls), etcd://host:2379[,host:2379…]/namespace[?ttl=10s] or zk://host:2181[,host:2181…]/namespace[?session-timeout=6s]; TLS and credentials as query parameters (etcd: ca-file, cert-file, key-file, tls, server-name, username, password-file, password-env; zk: digest-file, digest-env, tls, ca-file, cert-file, key-file, server-name)")
	fs.StringVar(&f.dataDir, "data-dir", "./data", "directory for this process's state (the embedded etcd's data, the local executor's tasks)")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:"+strconv.Itoa(api.DefaultPort), "address the REST API listens on; an address other hosts can reach needs --auth-user (or --"+flagInsecureNoAuth+")")
	fs.StringVar(&f.advertise, "advertise", "", "host:port other processes reach this one's API at (default: 127.0.0.1:<port> if --listen has no host or a wildcard one, else --listen)")
	fs.StringVar(&f.executor, "executor", "cluster", "what runs tasks: cluster (the workers of every serve process, placed by the leader), local (processes on the leader's host, a work directory shared by every process of one host), mesos (an Apache Mesos framework; see --mesos-master) or kubernetes (a Pod per task; see --kube-config)")
	fs.StringVar(&f.workDir, "work-dir", "", "the work directory of this process's worker (--executor cluster) or of the local executor (default <data-dir>/executor; tasks go in its tasks/, app packages in apps/)")
	fs.BoolVar(&f.worker, "worker", true, "with --executor cluster: run the tasks the leader places on this process; --worker=false makes it a scheduler only")
	fs.StringVar(&f.workerName, "worker-name", "", "with --executor cluster: this worker's name, the same across restarts so that a restarted process adopts its tasks (default: the host name)")
	fs.Float64Var(&f.workerCPUs, "worker-cpus", 0, "with --executor cluster: the CPUs the leader places tasks against (default: the host's)")
	fs.Float64Var(&f.workerMemoryMB, "worker-memory-mb", 0, "with --executor cluster: the memory in MB the leader places tasks against (default: the host's)")
	fs.StringVar(&f.workerLabels, "worker-labels", "", "with --executor cluster: labels jobs' constraints match, key=value[,key=value…] (for example zone=a)")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", 60*time.Second, "with --executor cluster: on SIGTERM, how long the worker lets TRANSIENT tasks finish before it kills them (DAEMON tasks are moved at once)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: trace, debug, info, warn, error or off")
	fs.BoolVar(&f.logJSON, "log-json", false, "log as JSON lines")
	fs.StringVar(&f.authUser, "auth-user", "", "the admin account: if set, every API write needs it (HTTP Basic, or a token from POST /api/login), with --auth-password-file or $HASCHED_AUTH_PASSWORD")
	fs.StringVar(&f.authPassword, "auth-password", "", "the password of --auth-user; on the command line every user of the host sees it (ps): prefer $HASCHED_AUTH_PASSWORD or --auth-password-file")
	f.apiSec.register(fs)
	f.alerts.register(fs)
	f.history.register(fs)
	fs.StringVar(&f.embeddedClientURL, "embedded-client-url", "https://127.0.0.1:2379", "client URL of the embedded etcd (with --coord embedded); always TLS, only clients with a certificate from <data-dir>/etcd/tls get in")
	fs.StringVar(&f.embeddedPeerURL, "embedded-peer-url", "https://127.0.0.1:2380", "peer URL of the embedded etcd (with --coord embedded); always TLS with client certificates")
	fs.StringVar(&f.mesosMaster, "mesos-master", "", "with --executor mesos: the Mesos masters, http://host:5050[,http://host:5050…] (a standby's redirect to the leader is followed) or zk://host:2181[,host:2181…]/mesos")
	fs.DurationVar(&f.mesosFailoverTimeout, "mesos-failover-timeout", mesos.DefaultFailoverTimeout, "with --executor mesos: how long Mesos keeps the framework and its tasks while no scheduler is connected")
	fs.StringVar(&f.mesosRole, "mesos-role", mesos.DefaultRole, "with --executor mesos: the framework's role")
	fs.StringVar(&f.mesosUser, "mesos-user", "", "with --executor mesos: the user tasks run as on the agents (default: the user running hasched)")
	fs.StringVar(&f.mesosFrameworkName, "mesos-framework-name", mesos.DefaultName, "with --executor mesos: the framework's name")
	f.kube.register(fs)
	return cmd
}

// validate checks every flag and derives the configuration; it touches
// nothing.
func (f serveFlags) validate() (serveConfig, error) {
	cfg := serveConfig{
		logJSON: f.logJSON,
	}

	switch {
	case f.coord == coordEmbedded:
		cfg.embedded = true
	case f.coord == "":
		return cfg, usagef("--coord is empty: use embedded, etcd://host:2379/namespace or zk://host:2181/namespace")
	default:
		display, err := checkCoordURL(f.coord, "embedded, ")
		if err != nil {
			return cfg, err
		}
		cfg.coordURL, cfg.coordDisplay = f.coord, display
	}

	if f.dataDir == "" {
		return cfg, usagef("--data-dir is empty")
	}
	cfg.dataDir = filepath.Clean(f.dataDir)
	if fi, err := os.Stat(cfg.dataDir); err == nil && !fi.IsDir() {
		return cfg, usagef("--data-dir %s is not a directory", cfg.dataDir)
	}
	cfg.etcdDir = filepath.Join(cfg.dataDir, "etcd")
	cfg.workDir = f.workDir
	if cfg.workDir == "" {
		cfg.workDir = filepath.Join(cfg.dataDir, "executor")
	}
	if fi, err := os.Stat(cfg.workDir); err == nil && !fi.IsDir() {
		return cfg, usagef("--work-dir %s is not a directory", cfg.workDir)
	}

	host, port, err := splitHostPort("--listen", f.listen, true)
	if err != nil {
		return cfg, err
	}
	cfg.listen, cfg.listenHost = f.listen, host
	if f.advertise != "" {
		if strings.Contains(f.advertise, "://") {
			return cfg, usagef("--advertise %q: give host:port, without a scheme", f.advertise)
		}
		ahost, aport, err := splitHostPort("--advertise", f.advertise, false)
		if err != nil {
			return cfg, err
		}
		if ahost == "" {
			return cfg, usagef("--advertise %q has no host", f.advertise)
		}
		if ip := net.ParseIP(ahost); ip != nil && ip.IsUnspecified() {
			return cfg, usagef("--advertise %q: %s is not an address other processes can reach", f.advertise, ahost)
		}
		cfg.advertise = net.JoinHostPort(ahost, strconv.Itoa(aport))
	}

	switch e := strings.ToLower(f.executor); e {
	case "cluster":
		cfg.executor = e
		cfg.worker = f.worker
		if err := f.validateWorker(&cfg); err != nil {
			return cfg, err
		}
	case "local":
		cfg.executor = e
	case "mesos":
		cfg.executor = e
		if strings.TrimSpace(f.mesosMaster) == "" {
			return cfg, usagef("--executor mesos needs --mesos-master: http://host:5050[,http://host:5050…] or zk://host:2181/mesos")
		}
		if f.mesosFailoverTimeout <= 0 {
			return cfg, usagef("--mesos-failover-timeout %v: give a positive duration, such as 168h", f.mesosFailoverTimeout)
		}
		cfg.mesos = mesos.Config{
			Masters:         mesos.ParseMasters(f.mesosMaster),
			FailoverTimeout: f.mesosFailoverTimeout,
			Role:            f.mesosRole,
			User:            f.mesosUser,
			Name:            f.mesosFrameworkName,
		}
		if err := cfg.mesos.Validate(); err != nil {
			return cfg, usagef("--executor mesos: %v", strings.TrimPrefix(err.Error(), mesos.ErrInvalidConfig.Error()+": "))
		}
	case "kubernetes":
		cfg.executor = e
		if cfg.kube, err = f.kube.validate(); err != nil {
			return cfg, err
		}
	default:
		return cfg, usagef("--executor %q is unknown; use cluster, local, mesos or kubernetes", f.executor)
	}
	if cfg.executor != "cluster" && f.workerChanged && f.worker {
		return cfg, usagef("--worker runs tasks placed by --executor cluster; with --executor %s the executor runs them", cfg.executor)
	}

	cfg.logLevel = hclog.LevelFromString(f.logLevel)
	if cfg.logLevel == hclog.NoLevel {
		return cfg, usagef("--log-level %q is unknown; use trace, debug, info, warn, error or off", f.logLevel)
	}

	if cfg.embedded {
		clientURL, cport, err := checkEmbeddedURL("--embedded-client-url", f.embeddedClientURL)
		if err != nil {
			return cfg, err
		}
		peerURL, pport, err := checkEmbeddedURL("--embedded-peer-url", f.embeddedPeerURL)
		if err != nil {
			return cfg, err
		}
		if cport != 0 && cport == pport {
			return cfg, usagef("--embedded-client-url and --embedded-peer-url use the same port %d", cport)
		}
		if port != 0 && (port == cport || port == pport) {
			return cfg, usagef("--listen port %d is also the embedded etcd's (--embedded-client-url %s, --embedded-peer-url %s)", port, f.embeddedClientURL, f.embeddedPeerURL)
		}
		cfg.embeddedClientURL, cfg.embeddedPeerURL = clientURL, peerURL
		cfg.coordDisplay = "embedded etcd at " + clientURL
	}

	// The REST API's accounts, TLS and exposure (apisecurity.go).
	if err := validateAPISecurity(f, &cfg); err != nil {
		return cfg, err
	}
	if cfg.alerts, err = f.alerts.validate(); err != nil {
		return cfg, err
	}
	if cfg.history, err = f.history.validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// validateWorker checks the worker's flags; with --worker=false they are
// checked all the same, so that a typo does not wait for the day the worker
// is turned on.
func (f serveFlags) validateWorker(cfg *serveConfig) error {
	ws := workerSettings{name: f.workerName, cpus: f.workerCPUs, memoryMB: f.workerMemoryMB}
	if f.drainTimeout <= 0 || f.drainTimeout > maxDrainTimeout {
		return usagef("--drain-timeout %v: give a positive duration up to %v (1ms: kill at once)", f.drainTimeout, maxDrainTimeout)
	}
	if ws.cpus < 0 || ws.cpus > model.MaxWorkerCPUs || math.IsNaN(ws.cpus) {
		return usagef("--worker-cpus %v: give more than 0, at most %v (0: the host's)", f.workerCPUs, model.MaxWorkerCPUs)
	}
	if ws.memoryMB < 0 || ws.memoryMB > model.MaxWorkerMemoryMB || math.IsNaN(ws.memoryMB) {
		return usagef("--worker-memory-mb %v: give more than 0, at most %d (0: the host's)", f.workerMemoryMB, model.MaxWorkerMemoryMB)
	}
	labels, err := model.ParseLabels("--worker-labels", f.workerLabels)
	if err != nil {
		return usagef("%v", err)
	}
	ws.labels = labels
	if ws.name != "" {
		probe := model.Worker{Name: ws.name, Incarnation: "0000000000000000", CPUs: 1, MemoryMB: 1}
		if err := probe.Check(); err != nil {
			return usagef("--worker-name %q: 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", ws.name)
		}
	}
	cfg.workerCfg, cfg.drainTimeout = ws, f.drainTimeout
	return nil
}

// maxDrainTimeout bounds --drain-timeout: a drain longer than this is a
// unit slip, and process supervisors kill long before.
const maxDrainTimeout = 24 * time.Hour

// checkCoordURL checks a --coord URL of a registered backend and returns
// its display form; also names what else the command accepts ("embedded,
// " for serve). Only the display form reaches logs, errors and the status:
// the password of user:password@ and secret-looking parameters are
// replaced (secrets belong in files or the environment).
func checkCoordURL(raw, also string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url's error quotes the URL, credentials and all.
		return "", usagef("--coord %s does not parse as a URL", coord.RedactURL(raw))
	}
	display := coord.RedactURL(raw)
	scheme := strings.ToLower(u.Scheme)
	if scheme == "" {
		return "", usagef("--coord %q is not a URL: use %setcd://host:2379/namespace or zk://host:2181/namespace", display, also)
	}
	if !slices.Contains(coord.Schemes(), scheme) {
		return "", usagef("--coord %q: unsupported scheme %q: use %sone of %s", display, u.Scheme, also, schemeList())
	}
	if u.Host == "" {
		return "", usagef("--coord %q names no servers: %s://host:port[,host:port…]/namespace", display, scheme)
	}
	return display, nil
}

func schemeList() string {
	var out []string
	for _, s := range coord.Schemes() {
		out = append(out, s+"://")
	}
	return strings.Join(out, ", ")
}

// splitHostPort checks a host:port flag; port 0 is allowed only if zeroOK.
func splitHostPort(flag, addr string, zeroOK bool) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, usagef("%s %q is not host:port (or :port): %v", flag, addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return "", 0, usagef("%s %q: port %q is not a number from 0 to 65535", flag, addr, portStr)
	}
	if port == 0 && !zeroOK {
		return "", 0, usagef("%s %q: port 0 is not an address", flag, addr)
	}
	if strings.ContainsAny(host, " /\\@") {
		return "", 0, usagef("%s %q: %q is not a host name or IP address", flag, addr, host)
	}
	return host, int(port), nil
}

// checkEmbeddedURL checks an embedded etcd URL and returns it as the
// https:// URL the server listens on, and its port.
//
// The embedded etcd always serves TLS and asks every client for a
// certificate of the CA it keeps in <data-dir>/etcd/tls, so that other local
// users cannot change what hasched schedules (issue 9). http:// is still
// accepted, for the command lines written before, and served as https://.
func checkEmbeddedURL(flag, raw string) (string, int, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", 0, usagef("%s: %v", flag, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", 0, usagef("%s %q: give https://host:port (the embedded etcd serves TLS with client certificates)", flag, raw)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
		return "", 0, usagef("%s %q: give https://host:port only", flag, raw)
	}
	_, port, err := splitHostPort(flag, u.Host, true)
	return "https://" + u.Host, port, err
}

// advertiseFor is the address the API is advertised at: --advertise, else
// the bound address, with a wildcard host replaced by 127.0.0.1.
func (cfg serveConfig) advertiseFor(bound net.Addr) string {
	if cfg.advertise != "" {
		return cfg.advertise
	}
	port := strconv.Itoa(bound.(*net.TCPAddr).Port)
	host := cfg.listenHost
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// runServe runs a scheduler process until ctx ends or a signal comes, and
// shuts it down in order: the scheduler (a leader resigns), the API, the
// embedded etcd. onListen, if set, learns the API's address once bound.
func runServe(ctx context.Context, cfg serveConfig, logOut io.Writer, onListen func(net.Addr)) error {
	log := hclog.New(&hclog.LoggerOptions{
		Name:       "hasched",
		Level:      cfg.logLevel,
		JSONFormat: cfg.logJSON,
		Output:     logOut,
	})
	ctx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()

	// The port is bound once for the life of the process, before the
	// election, so that no term ever binds it again.
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", cfg.listen, err)
	}
	defer ln.Close() // in case Serve never ran; closing twice is harmless
	if cfg.apiSec.serverTLS != nil {
		ln = tls.NewListener(ln, cfg.apiSec.serverTLS)
	}
	for _, w := range cfg.apiSec.warnings {
		log.Warn(w)
	}
	advertise := cfg.advertiseFor(ln.Addr())
	if !cfg.embedded && cfg.advertise == "" && strings.HasPrefix(advertise, "127.") {
		log.Warn("advertising a loopback address: standbys on other hosts cannot forward writes to this process; set --advertise", "advertise", advertise)
	}

	if err := os.MkdirAll(cfg.dataDir, 0o750); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}

	var (
		open     func(context.Context) (coord.Coordinator, error)
		embedded *etcd.Embedded
	)
	if cfg.embedded {
		embedded, err = etcd.StartEmbedded(ctx, etcd.EmbeddedConfig{
			Dir:       cfg.etcdDir,
			ClientURL: cfg.embeddedClientURL,
			PeerURL:   cfg.embeddedPeerURL,
			Logger:    log,
		})
		if err != nil {
			if ctx.Err() != nil {
				log.Info("interrupted while starting")
				return nil
			}
			return fmt.Errorf("start the embedded etcd: %w", err)
		}
		defer func() {
			log.Info("stopping the embedded etcd")
			if err := embedded.Close(); err != nil {
				log.Error("stopping the embedded etcd failed", "error", err)
				return
			}
			log.Info("embedded etcd stopped")
		}()
		// Only this process opens sessions on its embedded member, so every
		// lease there is an earlier incarnation's: after an unclean stop it
		// would hold the election for its TTL.
		if n, err := embedded.EndPreviousSessions(ctx); err != nil {
			return fmt.Errorf("end the sessions of an earlier run: %w", err)
		} else if n > 0 {
			log.Info("ended the sessions of an earlier run", "sessions", n)
		}
		endpoints, clientTLS := embedded.Endpoints(), embedded.ClientTLS()
		coordLog := log.Named("coord")
		open = func(ctx context.Context) (coord.Coordinator, error) {
			return etcd.New(ctx, etcd.Config{Endpoints: endpoints, TLS: clientTLS, Logger: coordLog})
		}
		// The client files let an operator in with etcdctl (--cacert,
		// --cert, --key); nobody else can read them.
		log.Info("embedded etcd started", "endpoints", endpoints, "dir", cfg.etcdDir, "client_certs", filepath.Dir(embedded.ClientTLSFiles().Cert))
	} else {
		coordURL := cfg.coordURL
		open = func(ctx context.Context) (coord.Coordinator, error) { return coord.Open(ctx, coordURL) }
	}
	mets, err := newServeMetrics() // metrics.go
	if err != nil {
		return err
	}
	open = mets.instrument(open, backendName(cfg))

	// Run history: the scheduler's event sink and the API's reader.
	recorder, err := startHistory(cfg.history, open, log)
	if err != nil {
		return err
	}
	defer func() { _ = recorder.Close() }()

	execLog := log.Named("executor")
	var (
		factory executor.Factory
		wk      *worker.Worker
	)
	switch cfg.executor {
	case "mesos":
		mcfg := cfg.mesos
		mcfg.Logger = execLog
		if factory, err = mesos.NewFactory(mcfg); err != nil {
			return fmt.Errorf("--executor mesos: %w", err)
		}
	case "kubernetes":
		if factory, err = kubeFactory(cfg.kube, execLog); err != nil {
			return fmt.Errorf("--executor kubernetes: %w", err)
		}
	case "cluster":
		if factory, err = cluster.NewFactory(cluster.Config{Logger: execLog}); err != nil {
			return fmt.Errorf("--executor cluster: %w", err)
		}
		if cfg.worker {
			ws := cfg.workerCfg
			wk, err = worker.New(worker.Config{
				Open:         open,
				Name:         ws.name,
				CPUs:         ws.cpus,
				MemoryMB:     ws.memoryMB,
				Labels:       ws.labels,
				API:          advertise,
				WorkDir:      cfg.workDir,
				Logger:       log, // it names itself "worker"
				DrainTimeout: cfg.drainTimeout,
			})
			if err != nil {
				return fmt.Errorf("the worker: %w", err)
			}
		}
	default:
		if factory, err = local.NewFactory(local.Config{WorkDir: cfg.workDir, Logger: execLog}); err != nil {
			return fmt.Errorf("--work-dir: %w", err)
		}
	}
	alerts, err := startAlerts(cfg.alerts, advertise, log)
	if err != nil {
		return err
	}
	// Closed after the scheduler has stopped: its last events are sent.
	defer alerts.close(log)
	// What the leader's terms do goes to the metrics, the run history and
	// the alerts.
	observers := events.Fanout{mets, recorder}
	if a := alerts.events(); a != nil {
		observers = append(observers, a)
	}
	sched, err := scheduler.New(scheduler.Config{
		Open:              open,
		Executor:          factory,
		ExecutorName:      cfg.executor,
		Advertise:         advertise,
		CoordinatorURL:    cfg.coordDisplay,
		Logger:            log,
		ReconcileInterval: scheduler.DefaultReconcileInterval,
		Events:            observers,
	})
	if err != nil {
		return err
	}
	mets.serving(sched)
	alerts.sched.Store(sched)
	streams := newStreamsEnd() // tasklogs.go
	handler, err := api.New(api.Config{
		Service:      sched,
		Logger:       log.Named("api"),
		AuthUser:     cfg.authUser,
		AuthPassword: cfg.authPassword,
		// The API's other accounts, TLS and forwarding (apisecurity.go).
		ReadOnlyUser:       cfg.apiSec.readOnlyUser,
		ReadOnlyPassword:   cfg.apiSec.readOnlyPassword,
		AuthReads:          cfg.apiSec.authReads,
		TokenTTL:           cfg.apiSec.tokenTTL,
		ForwardHTTPS:       cfg.apiSec.serverTLS != nil,
		ForwardTLS:         cfg.apiSec.forwardTLS,
		InsecureForwarding: cfg.apiSec.insecureForwarding,
		Metrics:            mets.Handler(),
		History:            recorder,
		// Task logs: this process's work directory, or the worker's that
		// ran the task (tasklogs.go).
		Logs:        newTaskLogs(cfg, wk != nil, sched.LocateTask),
		StreamsDone: streams.ch,
	})
	if err != nil {
		return err
	}
	// The web console beside the API it calls: its files are public, its
	// data behind the API's auth (scheduler/console).
	if handler, err = console.Mount(handler); err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	srv.RegisterOnShutdown(streams.close)

	// Both goroutines are owned here: each reports on its channel, and
	// runServe waits for both before it returns (the scheduler's wait is
	// bounded by stopTimeout, as the process exits right after).
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	// The worker runs until it has drained, after the signal: its own
	// context, not ctx.
	workerCtx, stopWorker := context.WithCancel(context.Background())
	defer stopWorker()
	worked := make(chan error, 1)
	if wk != nil {
		go func() { worked <- wk.Run(workerCtx) }()
	}
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	ran := make(chan error, 1)
	go func() { ran <- sched.Run(runCtx) }()

	log.Info("hasched started", "version", buildVersion(), "listen", ln.Addr().String(), "advertise", advertise,
		"coordinator", cfg.coordDisplay, "executor", cfg.executor, "worker", wk != nil, "work_dir", cfg.workDir, "auth", cfg.authUser != "",
		"auth_readonly", cfg.apiSec.readOnlyUser != "", "auth_reads", cfg.apiSec.authReads, "tls", cfg.apiSec.serverTLS != nil)
	if onListen != nil {
		onListen(ln.Addr())
	}

	var failure error
	runDone, serveDone, workerDone := false, false, wk == nil
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-ran:
		runDone = true
		if err == nil {
			err = errors.New("it returned without being asked to")
		}
		failure = fmt.Errorf("the scheduler stopped: %w", err)
		log.Error("the scheduler stopped; shutting down", "error", err)
	case err := <-served:
		serveDone = true
		failure = fmt.Errorf("the REST API stopped serving: %w", err)
		log.Error("the REST API stopped serving; shutting down", "error", err)
	case err := <-worked:
		workerDone = true
		if err == nil {
			err = errors.New("it returned without being asked to")
		}
		failure = fmt.Errorf("the worker stopped: %w", err)
		log.Error("the worker stopped; shutting down", "error", err)
	}
	// From here a second signal kills the process at once.
	stopSignals()

	// The worker drains while the scheduler resigns: nothing new is placed
	// on it, TRANSIENT tasks get --drain-timeout to finish, DAEMON tasks are
	// killed for the leader (maybe the next one) to run elsewhere.
	drained := make(chan error, 1)
	if !workerDone {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), cfg.drainTimeout+stopTimeout)
			defer cancel()
			drained <- wk.Drain(ctx)
		}()
	}
	stopRun()
	if !runDone {
		select {
		case err := <-ran:
			if err != nil && !errors.Is(err, context.Canceled) {
				log.Error("the scheduler stopped with an error", "error", err)
			}
			log.Info("scheduler stopped")
		case <-time.After(stopTimeout):
			log.Error("the scheduler did not stop in time; exiting anyway", "waited", stopTimeout)
		}
	}

	if !workerDone {
		if err := <-drained; err != nil {
			log.Error("the worker did not drain", "error", err)
		} else {
			log.Info("worker drained")
		}
		stopWorker()
		if err := <-worked; err != nil && !errors.Is(err, context.Canceled) {
			log.Error("the worker stopped with an error", "error", err)
		}
	}

	drainCtx, cancelDrain := context.WithTimeout(context.Background(), httpDrainTimeout)
	defer cancelDrain()
	if err := srv.Shutdown(drainCtx); err != nil {
		log.Warn("requests in flight did not finish in time; closing their connections", "error", err)
		_ = srv.Close()
	}
	if !serveDone {
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("the REST API failed while stopping", "error", err)
		}
	}
	log.Info("REST API stopped")
	return failure
}
