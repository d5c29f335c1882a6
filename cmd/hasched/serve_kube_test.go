package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2"

	"github.com/hasched/hasched/scheduler/executor/kube"
)

// --executor kubernetes is refused with bad --kube-* flags, before anything
// is read, bound or created; its flags come from the environment too.
func TestServeKubeRefusesBadConfiguration(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1") // as in a Pod: the flags are what is refused
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"context without kubeconfig", []string{"--executor", "kubernetes", "--kube-context", "prod"}, nil, []string{"--kube-context", "--kube-config"}},
		{"bad namespace", []string{"--executor", "kubernetes", "--kube-namespace", "Jobs_1"}, nil, []string{"--kube-namespace", "Jobs_1"}},
		{"bad image", []string{"--executor", "kubernetes", "--kube-image", "busy box"}, nil, []string{"--kube-image"}},
		{"bad fetch image", []string{"--executor", "kubernetes", "--kube-fetch-image", "hasched\t1"}, nil, []string{"--kube-fetch-image"}},
		{"bad cluster label", []string{"--executor", "kubernetes", "--kube-cluster-label", "a/b"}, nil, []string{"--kube-cluster-label"}},
		{"zero kill grace", []string{"--executor", "kubernetes", "--kube-kill-grace", "0s"}, nil, []string{"--kube-kill-grace"}},
		{"kill grace not whole seconds", []string{"--executor", "kubernetes", "--kube-kill-grace", "1500ms"}, nil, []string{"--kube-kill-grace", "whole seconds"}},
		{"kill grace too long", []string{"--executor", "kubernetes", "--kube-kill-grace", "2h"}, nil, []string{"--kube-kill-grace"}},
		{"zero pull timeout", []string{"--executor", "kubernetes", "--kube-pull-timeout", "0s"}, nil, []string{"--kube-pull-timeout"}},
		{"pull timeout too long", []string{"--executor", "kubernetes", "--kube-pull-timeout", "2h"}, nil, []string{"--kube-pull-timeout"}},
		{"negative retention", []string{"--executor", "kubernetes", "--kube-retention", "-1s"}, nil, []string{"--kube-retention"}},
		{"retention too long", []string{"--executor", "kubernetes", "--kube-retention", "1000h"}, nil, []string{"--kube-retention"}},
		{"namespace from env", nil, map[string]string{"HASCHED_EXECUTOR": "kubernetes", "HASCHED_KUBE_NAMESPACE": "-x-"}, []string{"--kube-namespace"}},
		{"unknown executor names kubernetes", []string{"--executor", "k8s"}, nil, []string{"kubernetes"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			serveRefuses(t, c.env, c.args, c.want...)
		})
	}
}

// Outside a cluster (no $KUBERNETES_SERVICE_HOST) a kubeconfig is needed:
// refused before the embedded etcd starts, not after.
func TestServeKubeOutsideAClusterNeedsAKubeconfig(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	serveRefuses(t, nil, []string{"--executor", "kubernetes"}, "outside a Kubernetes cluster needs --kube-config")
}

func TestServeKubeConfig(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
	f := serveFlags{coord: "zk://h:2181/ns", dataDir: "d", listen: "127.0.0.1:1", executor: "Kubernetes", logLevel: "info",
		kube: kubeFlags{namespace: "jobs", image: "busybox:1.37", fetch: "hasched/hasched:1", cluster: "prod", killGrace: 10 * time.Second, pull: time.Minute, retention: 2 * time.Minute}}
	cfg, err := f.validate()
	if err != nil {
		t.Fatal(err)
	}
	k := cfg.kube
	if cfg.executor != "kubernetes" || k.namespace != "jobs" || k.cfg.Image != "busybox:1.37" || k.cfg.Cluster != "prod" || k.cfg.KillGrace != 10*time.Second ||
		k.cfg.PullTimeout != time.Minute || k.cfg.Retention != 2*time.Minute || k.cfg.FetchImage != "hasched/hasched:1" {
		t.Errorf("config %q %+v", cfg.executor, k)
	}
	// The other executors ignore the --kube-* flags.
	f.executor, f.kube.namespace = "local", "Not A Namespace"
	if _, err := f.validate(); err != nil {
		t.Errorf("--executor local with a bad --kube-namespace: %v", err)
	}
}

const testKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: a
  cluster: {server: "https://a.example:6443", insecure-skip-tls-verify: true}
- name: b
  cluster: {server: "https://b.example:6443", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: "t0ken"}
contexts:
- name: ctx-a
  context: {cluster: a, user: u, namespace: team-a}
- name: ctx-b
  context: {cluster: b, user: u}
current-context: ctx-a
`

// The kubeconfig's current context or --kube-context picks the API server
// and the namespace; --kube-namespace wins; "default" without either.
// Without a kubeconfig, outside a cluster, the executor does not start.
func TestKubeconfigPicksServerAndNamespace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(testKubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	settings := func(ctx, ns string) kubeSettings {
		s, err := kubeFlags{config: path, context: ctx, namespace: ns, cluster: kube.DefaultLabelValue, killGrace: time.Second, pull: kube.DefaultPullTimeout, retention: kube.DefaultRetention}.validate()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, c := range []struct{ ctx, ns, wantHost, wantNS string }{
		{"", "", "https://a.example:6443", "team-a"},
		{"ctx-b", "", "https://b.example:6443", "default"},
		{"ctx-a", "jobs", "https://a.example:6443", "jobs"},
	} {
		cfg, host, err := kubeExecutorConfig(settings(c.ctx, c.ns))
		if err != nil {
			t.Fatalf("context %q: %v", c.ctx, err)
		}
		if host != c.wantHost || cfg.Namespace != c.wantNS || cfg.Client == nil {
			t.Errorf("context %q namespace %q: host %q namespace %q, want %q %q", c.ctx, c.ns, host, cfg.Namespace, c.wantHost, c.wantNS)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("context %q: %v", c.ctx, err)
		}
	}
	if _, _, err := kubeExecutorConfig(settings("nope", "")); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("an unknown context: %v", err)
	}
	if _, _, err := kubeExecutorConfig(kubeSettings{config: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("a missing kubeconfig: no error")
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, _, err := kubeExecutorConfig(kubeSettings{}); err == nil || !strings.Contains(err.Error(), "--kube-config") {
		t.Errorf("no kubeconfig outside a cluster: %v", err)
	}
}

func TestServeKubeFlagsInHelp(t *testing.T) {
	r := cli(t, nil, "", "serve", "--help").ok(t)
	for _, want := range []string{
		"or kubernetes (a Pod per task",
		"--kube-config", "$HASCHED_KUBE_CONFIG", "--kube-context", "--kube-namespace", "--kube-image", "--kube-fetch-image",
		"--kube-cluster-label", `"hasched"`, "--kube-kill-grace", "30s",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("serve --help does not mention %s", want)
		}
	}
}

// client-go's log lines go to hasched's logger, not to stderr as klog's.
func TestClientGoLogsGoToTheLogger(t *testing.T) {
	var buf strings.Builder
	klogTo(hclog.New(&hclog.LoggerOptions{Output: &buf, JSONFormat: true, Level: hclog.Info}))
	t.Cleanup(func() { klog.ClearLogger() })
	klog.InfoS("watch ended", "reason", "test")
	if !strings.Contains(buf.String(), `watch ended`) || !strings.HasPrefix(buf.String(), "{") {
		t.Errorf("logged %q, want a JSON line with the message", buf.String())
	}
}

// The README's Deployment (deploy/kubernetes/deployment.yaml) starts
// hasched with a command line serve accepts, as the kubelet would run it:
// $(POD_IP) expanded, in a Pod (in-cluster configuration). The API server
// accepting the manifest itself is integration/kube_test.go's.
func TestTheDeploymentManifestsCommandLineIsValid(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
	data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "kubernetes", "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, doc := range strings.Split(string(data), "\n---\n") {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("deployment.yaml: %v", err)
		}
		if d, ok := obj.(*appsv1.Deployment); ok {
			args = d.Spec.Template.Spec.Containers[0].Args
		}
	}
	if len(args) == 0 || args[0] != "serve" {
		t.Fatalf("the Deployment's container runs %q, want serve", args)
	}
	password := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(password, []byte("s3cret-from-a-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var line []string
	for _, a := range args[1:] {
		a = strings.ReplaceAll(a, "$(POD_IP)", "10.244.1.7")
		if strings.HasPrefix(a, "--auth-password-file=") {
			a = "--auth-password-file=" + password
		}
		if strings.HasPrefix(a, "--data-dir=") {
			a = "--data-dir=" + filepath.Join(t.TempDir(), "data")
		}
		line = append(line, a)
	}
	var got serveConfig
	cmd := serveCommand(func(_ *cobra.Command, cfg serveConfig) error { got = cfg; return nil })
	cmd.SetArgs(line)
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("serve refuses the Deployment's command line %q: %v", line, err)
	}
	if got.executor != "kubernetes" || got.advertise != "10.244.1.7:8899" || got.kube.cfg.FetchImage == "" || got.kube.cfg.Image == "" {
		t.Errorf("the Deployment's hasched: executor %q, advertise %q, images %q/%q", got.executor, got.advertise, got.kube.cfg.Image, got.kube.cfg.FetchImage)
	}
}
