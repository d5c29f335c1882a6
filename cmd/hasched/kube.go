package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/hashicorp/go-hclog"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/executor/kube"
)

// --executor kubernetes: tasks as Pods (scheduler/executor/kube).

const (
	flagKubeConfig    = "kube-config"
	flagKubeContext   = "kube-context"
	flagKubeNamespace = "kube-namespace"
	flagKubeImage     = "kube-image"
	flagKubeFetch     = "kube-fetch-image"
	flagKubeCluster   = "kube-cluster-label"
	flagKubeKillGrace = "kube-kill-grace"
	flagKubePull      = "kube-pull-timeout"
	flagKubeRetention = "kube-retention"

	// inClusterNamespace is where a Pod finds its own namespace.
	inClusterNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
)

// kubeFlags are serve's --kube-* flags as given.
type kubeFlags struct {
	config    string
	context   string
	namespace string
	image     string
	fetch     string
	cluster   string
	killGrace time.Duration
	pull      time.Duration
	retention time.Duration
}

func (f *kubeFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.config, flagKubeConfig, "", "with --executor kubernetes: the kubeconfig file of the cluster the tasks run in (default: the in-cluster configuration of the Pod hasched runs in)")
	fs.StringVar(&f.context, flagKubeContext, "", "with --executor kubernetes: the context of --"+flagKubeConfig+" to use (default: its current context)")
	fs.StringVar(&f.namespace, flagKubeNamespace, "", "with --executor kubernetes: the namespace of the tasks' Pods (default: the context's namespace, or in a cluster hasched's own, else default)")
	fs.StringVar(&f.image, flagKubeImage, "", "with --executor kubernetes: the image of the tasks of apps without an image of their own (empty: such tasks are refused)")
	fs.StringVar(&f.fetch, flagKubeFetch, "", "with --executor kubernetes: the image, holding hasched, of the init container that fetches a task's app package (appURL) with 'hasched fetch-app' (empty: tasks of apps with a package are refused)")
	fs.StringVar(&f.cluster, flagKubeCluster, kube.DefaultLabelValue, "with --executor kubernetes: the hasched.io/cluster label of this hasched cluster's Pods; hasched clusters sharing a namespace need different ones")
	fs.DurationVar(&f.killGrace, flagKubeKillGrace, kube.DefaultKillGrace, "with --executor kubernetes: a killed task's grace from SIGTERM to SIGKILL (whole seconds, at most 1h)")
	fs.DurationVar(&f.pull, flagKubePull, kube.DefaultPullTimeout, "with --executor kubernetes: how long a task's Pod may fail to pull its image before the task ends FAILED (at most 1h)")
	fs.DurationVar(&f.retention, flagKubeRetention, kube.DefaultRetention, "with --executor kubernetes: how long an ended task's Pod is kept after its end was recorded (at most 720h)")
}

// kubeSettings are the validated flags; the kubeconfig is read when serve
// starts the executor.
type kubeSettings struct {
	config, context, namespace string
	// cfg has everything but Client, Namespace (when not given) and Logger.
	cfg kube.Config
}

// validate checks the flags; it reads nothing.
func (f kubeFlags) validate() (kubeSettings, error) {
	s := kubeSettings{config: f.config, context: f.context, namespace: f.namespace}
	if f.config == "" && os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		// What rest.InClusterConfig would say once serve has started.
		return s, usagef("--executor kubernetes outside a Kubernetes cluster needs --%s", flagKubeConfig)
	}
	if f.context != "" && f.config == "" {
		return s, usagef("--%s names a context of --%s: give the kubeconfig too", flagKubeContext, flagKubeConfig)
	}
	if f.namespace != "" {
		if errs := validation.IsDNS1123Label(f.namespace); len(errs) > 0 {
			return s, usagef("--%s %q: %s", flagKubeNamespace, f.namespace, errs[0])
		}
	}
	s.cfg = kube.Config{Namespace: "default", Cluster: f.cluster, Image: f.image, FetchImage: f.fetch, KillGrace: f.killGrace, PullTimeout: f.pull, Retention: f.retention}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{flagKubeKillGrace, f.killGrace}, {flagKubePull, f.pull}, {flagKubeRetention, f.retention}} {
		if d.v <= 0 {
			return s, usagef("--%s %v: give a positive duration, such as 30s", d.flag, d.v)
		}
	}
	// Validated as the executor will, with stand-ins for what serve reads
	// later.
	check := s.cfg
	check.Client = &kubernetes.Clientset{}
	if err := check.Validate(); err != nil {
		msg := strings.TrimPrefix(err.Error(), kube.ErrInvalidConfig.Error()+": ")
		for field, flag := range map[string]string{"Cluster": flagKubeCluster, "Image": flagKubeImage, "FetchImage": flagKubeFetch, "KillGrace": flagKubeKillGrace, "PullTimeout": flagKubePull, "Retention": flagKubeRetention} {
			if strings.HasPrefix(msg, field+" ") || strings.HasPrefix(msg, field+":") {
				return s, usagef("--%s: %s", flag, msg)
			}
		}
		return s, usagef("--executor kubernetes: %s", msg)
	}
	return s, nil
}

// kubeFactory reads the kubeconfig (or the in-cluster configuration) and
// makes the executor's factory.
func kubeFactory(s kubeSettings, log hclog.Logger) (executor.Factory, error) {
	cfg, host, err := kubeExecutorConfig(s)
	if err != nil {
		return nil, err
	}
	cfg.Logger = log
	klogTo(log.Named("client-go"))
	log.Info("running tasks as Kubernetes Pods", "api_server", host, "namespace", cfg.Namespace, "cluster_label", cfg.Cluster, "default_image", cfg.Image, "fetch_image", cfg.FetchImage)
	return kube.NewFactory(cfg)
}

// klogTo sends client-go's log lines (klog's, process-wide) to log, so that
// they are leveled and --log-json output stays JSON lines.
func klogTo(log hclog.Logger) {
	klog.SetLogger(funcr.New(func(prefix, args string) {
		log.Info(strings.TrimSpace(prefix + " " + args))
	}, funcr.Options{}))
}

// kubeExecutorConfig is the executor's configuration: the client of the
// kubeconfig's context (or the in-cluster one) and the namespace, the
// flag's or else the context's. It returns the API server's address too.
func kubeExecutorConfig(s kubeSettings) (kube.Config, string, error) {
	var (
		rc  *rest.Config
		ns  string
		err error
	)
	if s.config == "" {
		rc, err = rest.InClusterConfig()
		if err != nil {
			return kube.Config{}, "", fmt.Errorf("no --%s and not in a cluster: %w", flagKubeConfig, err)
		}
		if b, err := os.ReadFile(inClusterNamespace); err == nil {
			ns = strings.TrimSpace(string(b))
		}
	} else {
		cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: s.config},
			&clientcmd.ConfigOverrides{CurrentContext: s.context})
		if rc, err = cc.ClientConfig(); err != nil {
			return kube.Config{}, "", fmt.Errorf("--%s %s: %w", flagKubeConfig, s.config, err)
		}
		if ns, _, err = cc.Namespace(); err != nil {
			return kube.Config{}, "", fmt.Errorf("--%s %s: %w", flagKubeConfig, s.config, err)
		}
	}
	rc.UserAgent = "hasched"
	cfg := s.cfg
	if cfg.Client, err = kubernetes.NewForConfig(rc); err != nil {
		return cfg, "", err
	}
	switch {
	case s.namespace != "":
		cfg.Namespace = s.namespace
	case ns != "":
		cfg.Namespace = ns
	}
	return cfg, rc.Host, nil
}
