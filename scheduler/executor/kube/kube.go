// Package kube runs hasched's tasks on Kubernetes: each task is one Pod.
//
// # A Pod, not a batch/v1 Job
//
// A task is one run of one shard, at most once; whether it runs again is
// the scheduler's decision (failover, retries, its own new attempt id). A
// Pod does exactly that: with restartPolicy Never the kubelet runs its
// container once, and its name, derived from the task id (podName), makes
// the API server refuse a second Pod of the same task with AlreadyExists —
// the exactly-once of a relaunch by this term or the next. A Job would add
// a controller between the scheduler and the Pod that makes Pods of its
// own (a replacement for an evicted or deleted Pod, unless backoffLimit is
// 0 and podFailurePolicy and podReplacementPolicy are set just so), that
// needs kube-controller-manager running, and whose Pods' names are not
// ours: two layers of state to reconcile instead of one, for nothing the
// scheduler uses.
//
// # What the executor keeps where
//
// Everything about a task is on its Pod, so that the next term's executor
// (another process) adopts it by listing: labels select the Pods of this
// hasched cluster (labelCluster) and carry the job, shard and attempt;
// annotations carry the full task id, the fire time, the term that
// created it, and killedAnnotation once a term killed it (so that its
// disappearance reads KILLED, not LOST, whichever term watches it). An
// informer on the cluster's Pods turns their changes into statuses.
//
// # Images and app packages
//
// A task runs `/bin/sh -c <command> hasched <sharding context JSON>` in its
// app's image (model.App.Image), or in Config.Image if the app has none,
// with the HASCHED_* variables every executor sets, in its task directory
// (an emptyDir, HASCHED_TASK_DIR).
//
// A task whose app has a package (appURL, and appChecksum) gets it as on
// the local executor: unpacked into <task dir>/app, its working directory,
// where its command (the app's bootstrapScript) expects it. An init
// container in Config.FetchImage (an image holding hasched) runs `hasched
// fetch-app` (package scheduler/apppkg: checksum, size bounds, safe
// unpacking) into the task's emptyDir before the task's container starts,
// in the task's image as ever. Without a FetchImage such a task is refused
// (ErrInvalidTask) rather than run without its package. The init
// container asks for the task's resources and, like the task, gets no
// service account token. The URL reaches it in an environment variable,
// not on its command line; it is part of the Pod's spec all the same, so
// whoever may read the namespace's Pods may read a credential in it. A
// fetch that fails fails the Pod and the task (FAILED, "the app package
// could not be fetched", with fetch-app's message); a FetchImage that
// cannot be pulled is given up on after PullTimeout, as a task's image is.
// The unpacked files keep their archive's modes and belong to the fetch
// image's user: a task image running as another user needs them readable
// by it.
//
// # Ends, and ended Pods
//
// Phases and the container's exit code give the task's state (statusOf);
// what the node does to a Pod (evicted, OOM-killed, node lost or shut
// down, a Pod deleted by someone else) reads LOST, so that the scheduler
// fails the task over as its job says. A Pod that cannot pull its image
// for PullTimeout is given up on: marked failed, then deleted, FAILED. An ended Pod is deleted Retention
// after its end was reported, not at once: the term that reported it may
// die before it records it, and the next term's reconciliation must then
// find the end, not a missing Pod.
//
// # Fencing
//
// The term proves it leads (a fenced write) right before it calls Launch;
// Launch proves it again right before it creates Pods (Term.State.Store, a
// write fenced by the term), so that a leader deposed while a Launch
// waited (for the API server, a slow create before it) creates nothing.
// A Pod created by a deposed leader all the same (a create already on the
// wire) is one the next leader adopts by its name: never a second.
package kube

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/hasched/hasched/internal/defaults"
	"github.com/hasched/hasched/scheduler/executor"
)

// Errors, for errors.Is.
var (
	// ErrClosed is returned by every call made after Close.
	ErrClosed = fmt.Errorf("kubernetes executor: %w", executor.ErrClosed)
	// ErrInvalidConfig wraps every Config validation failure.
	ErrInvalidConfig = errors.New("kubernetes executor: invalid config")
	// ErrInvalidTask refuses a Launch batch holding a task that cannot run
	// on Kubernetes (no id, no command, no image, an app package and no
	// FetchImage).
	ErrInvalidTask = fmt.Errorf("kubernetes executor: %w", executor.ErrInvalidTask)
	// ErrDeposed: the term no longer leads; Launch created no Pod.
	ErrDeposed = errors.New("kubernetes executor: the term no longer leads")
	// ErrNameTaken: a Pod of the task's name exists but is not the task's
	// (another hasched cluster's, or someone else's in the namespace).
	ErrNameTaken = errors.New("kubernetes executor: the task's Pod name is taken")
)

// Defaults of Config's zero values.
const (
	// DefaultKillGrace is Kubernetes' own terminationGracePeriodSeconds.
	DefaultKillGrace = 30 * time.Second
	// DefaultCallTimeout bounds one API call.
	DefaultCallTimeout = 10 * time.Second
	// DefaultSyncTimeout bounds the first list of the cluster's Pods.
	DefaultSyncTimeout = 30 * time.Second
	// DefaultRetention is how long an ended Pod stays after its end was
	// reported: the term that reported it may die before it records it,
	// and the next term's reconciliation must still find the end then,
	// not a missing Pod (which would read UNKNOWN, and fail over a task
	// that ran).
	DefaultRetention = time.Hour
	// DefaultPullTimeout is how long a Pod may wait for its image: a
	// task whose image cannot be pulled ends FAILED, not STAGING forever.
	DefaultPullTimeout = 5 * time.Minute
	// DefaultLabelValue is Cluster's default.
	DefaultLabelValue = "hasched"

	maxKillGrace = time.Hour
	maxRetention = 30 * 24 * time.Hour
	// createsAtOnce bounds the creates, gets and deletes one call has in
	// flight.
	createsAtOnce = 8
	// statusBuffer is the capacity of the Statuses channel; the queue
	// behind it is unbounded.
	statusBuffer = 1024
	// stateKey is the executor state key of Launch's fenced write.
	stateKey = "kubernetes"
	// listPage is the page size of an implicit reconciliation's list.
	listPage = 500
)

// Config configures the executor of every term.
type Config struct {
	// Client is the API server's client (a fake clientset in tests);
	// required.
	Client kubernetes.Interface
	// Namespace is where the Pods go; required.
	Namespace string
	// Cluster is the value of the hasched.io/cluster label on every Pod of
	// this hasched cluster: hasched clusters sharing a namespace must use
	// different ones. Default "hasched".
	Cluster string
	// Image is the image of the tasks of an app without one (empty: such
	// tasks are refused).
	Image string
	// FetchImage is the image of the init container that fetches a task's
	// app package (appURL): one holding the hasched binary on its PATH,
	// such as hasched's own (empty: tasks of apps with a package are
	// refused).
	FetchImage string
	// KillGrace is the Pods' terminationGracePeriodSeconds and Kill's
	// grace period: from SIGTERM to SIGKILL. Whole seconds, at most an hour.
	KillGrace time.Duration
	// CallTimeout bounds each API call.
	CallTimeout time.Duration
	// SyncTimeout bounds the first list of the Pods when a term opens.
	SyncTimeout time.Duration
	// Retention is how long an ended Pod is kept after its end was
	// reported; then it is deleted.
	Retention time.Duration
	// PullTimeout is how long a Pod may fail to pull its image (ErrImagePull,
	// ImagePullBackOff, counted from the kubelet's start of the Pod) before
	// the task ends FAILED and its Pod is deleted.
	PullTimeout time.Duration
	// GCInterval is how often ended Pods (and Pods failing to pull their
	// image) are looked at; default a tenth of Retention, at least a
	// second, at most a minute (tests set it).
	GCInterval time.Duration
	// Logger default: a null logger.
	Logger hclog.Logger
}

// withDefaults validates cfg and fills in the defaults.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Client == nil {
		return cfg, fmt.Errorf("%w: Client is required", ErrInvalidConfig)
	}
	if cfg.Namespace == "" {
		return cfg, fmt.Errorf("%w: Namespace is required", ErrInvalidConfig)
	}
	if errs := validation.IsDNS1123Label(cfg.Namespace); len(errs) > 0 {
		return cfg, fmt.Errorf("%w: Namespace %q: %s", ErrInvalidConfig, cfg.Namespace, errs[0])
	}
	if cfg.Cluster == "" {
		cfg.Cluster = DefaultLabelValue
	}
	if errs := validation.IsValidLabelValue(cfg.Cluster); len(errs) > 0 {
		return cfg, fmt.Errorf("%w: Cluster %q is not a label value: %s", ErrInvalidConfig, cfg.Cluster, errs[0])
	}
	if err := checkImage(cfg.Image); err != nil {
		return cfg, fmt.Errorf("%w: Image: %v", ErrInvalidConfig, err)
	}
	if err := checkImage(cfg.FetchImage); err != nil {
		return cfg, fmt.Errorf("%w: FetchImage: %v", ErrInvalidConfig, err)
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if err := defaults.Durations(ErrInvalidConfig, []defaults.Duration{
		{Name: "KillGrace", V: &cfg.KillGrace, Default: DefaultKillGrace, Max: maxKillGrace},
		{Name: "CallTimeout", V: &cfg.CallTimeout, Default: DefaultCallTimeout, Max: 10 * time.Minute},
		{Name: "SyncTimeout", V: &cfg.SyncTimeout, Default: DefaultSyncTimeout, Max: 10 * time.Minute},
		{Name: "Retention", V: &cfg.Retention, Default: DefaultRetention, Max: maxRetention},
		{Name: "PullTimeout", V: &cfg.PullTimeout, Default: DefaultPullTimeout, Max: time.Hour},
	}...); err != nil {
		return cfg, err
	}
	if cfg.KillGrace%time.Second != 0 {
		return cfg, fmt.Errorf("%w: KillGrace %v is not whole seconds (terminationGracePeriodSeconds)", ErrInvalidConfig, cfg.KillGrace)
	}
	if cfg.GCInterval == 0 {
		cfg.GCInterval = min(max(cfg.Retention/10, time.Second), time.Minute)
	}
	if err := defaults.Durations(ErrInvalidConfig, defaults.Duration{Name: "GCInterval", V: &cfg.GCInterval, Max: time.Hour}); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// Validate checks cfg as NewFactory does, without opening anything.
func (cfg Config) Validate() error {
	_, err := cfg.withDefaults()
	return err
}

// NewFactory validates cfg and returns the factory of every term's
// executor.
func NewFactory(cfg Config) (executor.Factory, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, term executor.Term) (executor.Executor, error) {
		return open(ctx, cfg, term)
	}, nil
}

// Executor is the Kubernetes executor of one term.
type Executor struct {
	cfg  Config
	log  hclog.Logger
	term executor.Term
	sel  labels.Selector

	out   chan executor.Status
	queue *executor.StatusQueue

	factory  informers.SharedInformerFactory
	informer cache.SharedIndexInformer
	stop     chan struct{} // closed by Close: stops the informer and the collector

	// ctx is cancelled by Close: it ends the calls in flight.
	ctx    context.Context
	cancel context.CancelFunc

	mu sync.Mutex
	// tasks is what this term knows of each task's Pod, by task id.
	tasks map[string]*taskState

	calls     executor.Gate
	wg        sync.WaitGroup // the collector
	done      chan struct{}  // closed by Close after the informer: ends the drainer
	drained   chan struct{}
	closeOnce sync.Once
}

var (
	_ executor.Executor  = (*Executor)(nil)
	_ executor.Describer = (*Executor)(nil)
)

// taskState is what the term reported of a task: the order and the one
// end of its statuses are kept here.
type taskState struct {
	last  executor.State // "" before any status
	ended time.Time      // when it was first seen ended
	uid   string         // of the Pod last seen
}

// open starts the executor of one term: an informer on the cluster's Pods,
// waited for until it has listed them, so that a Launch right after knows
// what the previous term left.
func open(ctx context.Context, cfg Config, term executor.Term) (*Executor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if term.State == nil {
		return nil, fmt.Errorf("%w: the term has no state store to fence Launch with", ErrInvalidConfig)
	}
	sel := labels.SelectorFromSet(labels.Set{labelCluster: cfg.Cluster})
	e := &Executor{
		cfg:     cfg,
		log:     cfg.Logger.Named("kubernetes").With("term", term.Token, "namespace", cfg.Namespace),
		term:    term,
		sel:     sel,
		out:     make(chan executor.Status, statusBuffer),
		queue:   executor.NewStatusQueue(),
		stop:    make(chan struct{}),
		tasks:   map[string]*taskState{},
		done:    make(chan struct{}),
		drained: make(chan struct{}),
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.factory = informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0,
		informers.WithNamespace(cfg.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel.String() }))
	e.informer = e.factory.Core().V1().Pods().Informer()
	if _, err := e.informer.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc:    e.onAdd,
		UpdateFunc: func(_, obj any) { e.onChange(obj) },
		DeleteFunc: e.onDelete,
	}); err != nil {
		e.cancel()
		return nil, fmt.Errorf("kubernetes executor: watch the Pods: %w", err)
	}
	go func() {
		defer close(e.drained)
		e.queue.Drain(e.out, e.done)
	}()
	e.factory.Start(e.stop)

	syncCtx, cancel := context.WithTimeout(ctx, cfg.SyncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), e.informer.HasSynced) {
		e.shutdown()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("kubernetes executor: no list of the Pods in namespace %s within %v", cfg.Namespace, cfg.SyncTimeout)
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.collect()
	}()
	e.log.Info("watching the cluster's Pods", "selector", sel.String(), "pods", len(e.informer.GetStore().ListKeys()))
	return e, nil
}

// Describe says where the Pods go and how many of them the term watches.
func (e *Executor) Describe() map[string]string {
	return map[string]string{
		"namespace":     e.cfg.Namespace,
		"cluster_label": e.cfg.Cluster,
		"default_image": e.cfg.Image,
		"fetch_image":   e.cfg.FetchImage,
		"pods":          strconv.Itoa(len(e.informer.GetStore().ListKeys())),
	}
}

// Statuses delivers every status update; it is closed by Close.
func (e *Executor) Statuses() <-chan executor.Status { return e.out }

// Close ends the term: the informer and the collector stop, calls in
// flight are cancelled and waited for, Statuses is closed. The Pods keep
// running: the next term adopts them.
func (e *Executor) Close() error {
	e.closeOnce.Do(func() {
		e.calls.Shut()
		e.cancel()
		e.calls.Wait()
		e.shutdown()
	})
	return nil
}

// shutdown stops the informer and the collector and closes Statuses.
func (e *Executor) shutdown() {
	e.cancel()
	close(e.stop)
	e.factory.Shutdown()
	e.wg.Wait()
	close(e.done)
	<-e.drained
}

// enter registers a call; it fails after Close.
func (e *Executor) enter() (func(), error) { return e.calls.Enter(ErrClosed) }

// call bounds one API call by CallTimeout and by Close.
func (e *Executor) call(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
	stop := context.AfterFunc(e.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// report pushes a status that is not a reconciliation's answer, keeping a
// task's statuses in order: STAGING, RUNNING, one end. A status that would
// go back (a Launch's Get that read the Pod before the watch saw it move
// on) or a second, different end is dropped; a repeat is kept only if
// again is set (a relaunch or a Kill reports the task's state again; the
// watch's changes that leave the state as it was report nothing).
func (e *Executor) report(st executor.Status, uid string, again bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := e.tasks[st.TaskID]
	if k == nil {
		k = &taskState{}
		e.tasks[st.TaskID] = k
	}
	if uid != "" {
		k.uid = uid
	}
	if k.last.Terminal() && st.State != k.last || rank(st.State) < rank(k.last) || !again && st.State == k.last {
		return
	}
	if st.State.Terminal() && !k.last.Terminal() {
		k.ended = time.Now()
	}
	k.last = st.State
	e.queue.Push(st)
}

// baseline records what the first list showed without reporting it: the
// previous term reported it, or the scheduler asks (Reconcile).
func (e *Executor) baseline(id, uid string, s executor.State) {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := &taskState{last: s, uid: uid}
	if s.Terminal() {
		k.ended = time.Now()
	}
	e.tasks[id] = k
}

func rank(s executor.State) int {
	switch {
	case s == "":
		return -1
	case s == executor.StateStaging:
		return 0
	case s == executor.StateRunning:
		return 1
	}
	return 2
}

// answer pushes a reconciliation's answer.
func (e *Executor) answer(st executor.Status) {
	st.Reconcile = true
	e.queue.Push(st)
}

// grace is KillGrace in seconds.
func (e *Executor) grace() int64 { return int64(e.cfg.KillGrace / time.Second) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// podOf is obj as a Pod of this cluster, or nil.
func (e *Executor) podOf(obj any) *corev1.Pod {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok || p.Labels[labelCluster] != e.cfg.Cluster || p.Annotations[annotationTaskID] == "" {
		return nil
	}
	return p
}

type podClient = typedcorev1.PodInterface

// now is the time of a status.
func now() time.Time { return time.Now() }
