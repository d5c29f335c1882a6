package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
	tcwait "github.com/testcontainers/testcontainers-go/wait"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// The Kubernetes rig: a real kube-apiserver and kube-scheduler of one
// release, and kwok playing the kubelets,
// each a container of the image images/build-kube.sh builds (only when it
// is missing: the servers take minutes to compile), on a private Docker
// network with an etcd container of their own. The API server's port is
// pinned on the loopback interface, so that hasched processes on this
// machine reach it at one address across its restarts.
//
// kwok runs no container: the Stages below play a task's life from its
// Pod. A Pod bound to a node runs; a task whose command says `sleep N`
// ends N seconds after it started, with the exit code of its `exit N`
// (0 without one); a command without a sleep runs until it is deleted; an
// image named kubeUnpullableImage is never pulled (ErrImagePull); a Pod
// being deleted is gone a moment later. There is no
// kube-controller-manager (images/build-kube.sh says why): what its
// controllers would do to a lost node's Pods the tests do through the API
// (removeNode).

const (
	kubeImageEnv     = "HASCHED_KUBE_IMAGE"
	defaultKubeImage = "hasched/kube:1.37.2"
	// kubeTaskImage is the tasks' image: kwok pulls nothing, any name runs.
	kubeTaskImage = "hasched.test/task:1"
	// kubeUnpullableImage is an image kwok's Stages never pull.
	kubeUnpullableImage = "hasched.test/unpullable:1"
	// kubeDeployDir holds the manifests the README's Kubernetes section
	// gives; the tests apply its RBAC to every namespace they run hasched
	// in, so that hasched runs with exactly the rights it documents.
	kubeDeployDir = "deploy/kubernetes"
)

// kubeStages are kwok's Stages for the tests' nodes and Pods.
const kubeStages = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-up
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: NotIn
      values: ['True']
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - {type: Ready, status: "True", reason: KubeletReady, message: kwok, lastHeartbeatTime: {{ $now | Quote }}, lastTransitionTime: {{ $now | Quote }}}
      - {type: MemoryPressure, status: "False", reason: KubeletHasSufficientMemory, message: kwok, lastHeartbeatTime: {{ $now | Quote }}, lastTransitionTime: {{ $now | Quote }}}
      - {type: DiskPressure, status: "False", reason: KubeletHasNoDiskPressure, message: kwok, lastHeartbeatTime: {{ $now | Quote }}, lastTransitionTime: {{ $now | Quote }}}
      - {type: PIDPressure, status: "False", reason: KubeletHasSufficientPID, message: kwok, lastHeartbeatTime: {{ $now | Quote }}, lastTransitionTime: {{ $now | Quote }}}
      allocatable: {cpu: "16", memory: 64Gi, pods: "200"}
      capacity: {cpu: "16", memory: 64Gi, pods: "200"}
      nodeInfo: {architecture: amd64, operatingSystem: linux, kubeletVersion: kwok, kubeProxyVersion: kwok}
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-unpullable
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: DoesNotExist
    - key: '.spec.nodeName'
      operator: Exists
    - key: '.status.phase'
      operator: In
      values: ['Pending']
    - key: '.status.containerStatuses'
      operator: DoesNotExist
    - key: '.spec.containers[0].image'
      operator: In
      values: ['` + kubeUnpullableImage + `']
  delay:
    durationMilliseconds: 200
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - {type: PodScheduled, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
      containerStatuses:
      {{ range .spec.containers }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        imageID: ""
        ready: false
        restartCount: 0
        started: false
        state:
          waiting: {reason: ErrImagePull, message: "pull access denied for this image (kwok)"}
      {{ end }}
      hostIP: 10.0.0.1
      phase: Pending
      startTime: {{ $now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-run
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: DoesNotExist
    - key: '.spec.nodeName'
      operator: Exists
    - key: '.status.phase'
      operator: In
      values: ['Pending']
    - key: '.spec.containers[0].image'
      operator: NotIn
      values: ['` + kubeUnpullableImage + `']
  delay:
    durationMilliseconds: 200
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - {type: PodScheduled, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: ContainersReady, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: Ready, status: "True", lastTransitionTime: {{ $now | Quote }}}
      {{ with .spec.initContainers }}
      initContainerStatuses:
      {{ range . }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        imageID: ""
        ready: true
        restartCount: 0
        state:
          terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}
      {{ end }}
      {{ end }}
      containerStatuses:
      {{ range .spec.containers }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        imageID: ""
        ready: true
        restartCount: 0
        started: true
        state:
          running: {startedAt: {{ $now | Quote }}}
      {{ end }}
      hostIP: 10.0.0.1
      podIP: 10.244.0.1
      phase: Running
      startTime: {{ $now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-end
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: DoesNotExist
    - key: '.status.phase'
      operator: In
      values: ['Running']
    - key: '.spec.containers[0].args[0] | test("sleep [0-9]+")'
      operator: In
      values: ['true']
  delay:
    durationMilliseconds: 1000
    durationFrom:
      expressionFrom: '.spec.containers[0].args[0] | capture("sleep (?<s>[0-9]+)") | .s + "s"'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $cmd := index (index .spec.containers 0).args 0 }}
      {{ $code := regexFind "exit [0-9]+" $cmd | trimPrefix "exit " | default "0" }}
      conditions:
      - {type: PodScheduled, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: ContainersReady, status: "False", lastTransitionTime: {{ $now | Quote }}}
      - {type: Ready, status: "False", lastTransitionTime: {{ $now | Quote }}}
      containerStatuses:
      {{ range .spec.containers }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        imageID: ""
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: {{ $code }}
            reason: {{ if eq $code "0" }}Completed{{ else }}Error{{ end }}
            startedAt: {{ $now | Quote }}
            finishedAt: {{ $now | Quote }}
      {{ end }}
      phase: {{ if eq $code "0" }}Succeeded{{ else }}Failed{{ end }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-gone
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: Exists
  delay:
    durationMilliseconds: 300
  next:
    delete: true
`

// kubeRig is one control plane.
type kubeRig struct {
	t   testing.TB
	dir string
	nw  *testcontainers.DockerNetwork

	apiserver *haContainer
	caPEM     []byte
	// admin is cluster-admin (system:masters), for what the tests do as
	// the cluster's operator.
	admin *kubernetes.Clientset
}

// newKubeRig starts the control plane and waits until it schedules Pods
// onto the nodes named (kwok nodes, created here).
func newKubeRig(t testing.TB, nodes ...string) *kubeRig {
	t.Helper()
	image := imageFromEnv(kubeImageEnv, defaultKubeImage)
	r := &kubeRig{t: t, dir: t.TempDir()}
	adminToken := kubeRandomToken(t)
	r.writeCredentials(adminToken)
	r.nw = newNetwork(t)

	startContainer(t, imageFromEnv(etcdImageEnv, defaultEtcdImage),
		testcontainers.WithCmd("etcd",
			"--name", "kube-etcd",
			"--data-dir", "/var/lib/etcd/data",
			"--listen-client-urls", "http://0.0.0.0:2379",
			"--advertise-client-urls", "http://kube-etcd:2379"),
		tcnetwork.WithNetwork([]string{"kube-etcd"}, r.nw),
		testcontainers.WithWaitStrategyAndDeadline(time.Minute, tcwait.ForLog("ready to serve client requests")),
	)
	r.apiserver = haStartPinned(t, image, "6443/tcp",
		tcnetwork.WithNetwork([]string{"apiserver"}, r.nw),
		r.files("ca.crt", "apiserver.crt", "apiserver.key", "sa.key", "sa.pub", "tokens.csv"),
		testcontainers.WithEnv(map[string]string{"HOME": "/tmp"}),
		testcontainers.WithCmd("kube-apiserver",
			"--etcd-servers=http://kube-etcd:2379",
			"--etcd-prefix=/registry",
			"--secure-port=6443",
			"--bind-address=0.0.0.0",
			"--cert-dir=/var/lib/kube/certs",
			"--tls-cert-file=/etc/kube/apiserver.crt",
			"--tls-private-key-file=/etc/kube/apiserver.key",
			"--client-ca-file=/etc/kube/ca.crt",
			"--service-account-issuer=https://kubernetes.default.svc",
			"--service-account-key-file=/etc/kube/sa.pub",
			"--service-account-signing-key-file=/etc/kube/sa.key",
			"--token-auth-file=/etc/kube/tokens.csv",
			"--authorization-mode=RBAC",
			"--endpoint-reconciler-type=none",
			"--service-cluster-ip-range=10.96.0.0/16",
			"--enable-priority-and-fairness=false",
		),
		testcontainers.WithWaitStrategyAndDeadline(2*time.Minute, tcwait.ForLog("Serving securely on")),
	)
	cfg := r.restConfig(adminToken)
	admin, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.admin = admin
	r.waitReady(2 * time.Minute)

	inNet := []string{"--kubeconfig=/etc/kube/admin.kubeconfig"}
	r.logsOnFailure("kube-apiserver", r.apiserver.ctr)
	r.logsOnFailure("kube-scheduler", startContainer(t, image,
		tcnetwork.WithNetwork([]string{"kube-scheduler"}, r.nw),
		r.files("admin.kubeconfig"),
		testcontainers.WithEnv(map[string]string{"HOME": "/tmp"}),
		testcontainers.WithCmd(append([]string{"kube-scheduler", "--leader-elect=false", "--secure-port=0"}, inNet...)...),
	))
	r.logsOnFailure("kwok", startContainer(t, image,
		tcnetwork.WithNetwork([]string{"kwok"}, r.nw),
		r.files("admin.kubeconfig", "stages.yaml"),
		testcontainers.WithEnv(map[string]string{"HOME": "/tmp"}),
		testcontainers.WithCmd(append([]string{"kwok", "--manage-all-nodes=true", "--config=/etc/kube/stages.yaml"}, inNet...)...),
	))
	for _, n := range nodes {
		r.addNode(n)
	}
	return r
}

// logsOnFailure prints the end of a control-plane container's log when the
// test fails (before the container is removed).
func (r *kubeRig) logsOnFailure(name string, c testcontainers.Container) {
	r.t.Cleanup(func() {
		if !r.t.Failed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rc, err := c.Logs(ctx)
		if err != nil {
			r.t.Logf("the log of %s: %v", name, err)
			return
		}
		defer rc.Close()
		b, _ := io.ReadAll(io.LimitReader(rc, 64<<20))
		if len(b) > 32<<10 {
			b = b[len(b)-32<<10:]
		}
		r.t.Logf("--- the end of the log of %s ---\n%s", name, b)
	})
}

// files copies the named files of the rig's directory into /etc/kube.
func (r *kubeRig) files(names ...string) testcontainers.CustomizeRequestOption {
	var fs []testcontainers.ContainerFile
	for _, n := range names {
		fs = append(fs, testcontainers.ContainerFile{
			HostFilePath:      filepath.Join(r.dir, n),
			ContainerFilePath: "/etc/kube/" + n,
			FileMode:          0o644,
		})
	}
	return testcontainers.WithFiles(fs...)
}

// restConfig is a client configuration for the API server's pinned
// loopback address with a bearer token.
func (r *kubeRig) restConfig(token string) *rest.Config {
	return &rest.Config{
		Host:            "https://" + r.apiserver.addr,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: r.caPEM},
		Timeout:         30 * time.Second,
		QPS:             100,
		Burst:           200,
	}
}

// waitReady waits until the API server answers /readyz.
func (r *kubeRig) waitReady(timeout time.Duration) {
	r.t.Helper()
	haEventually(r.t, "the API server is ready", timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		body, err := r.admin.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("%v: %s", err, body)
		}
		return nil
	})
}

// addNode creates a kwok node and waits until it is Ready.
func (r *kubeRig) addNode(name string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        name,
		Labels:      map[string]string{"type": "kwok", "kubernetes.io/hostname": name},
		Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
	}}
	if _, err := r.admin.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		r.t.Fatalf("create node %s: %v", name, err)
	}
	haEventually(r.t, "node "+name+" is Ready", time.Minute, func() error {
		n, err := r.admin.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return errors.New("not Ready yet")
	})
	// The API server taints a new node not-ready (TaintNodesByCondition);
	// the controller-manager's node lifecycle controller lifts the taint
	// once the node is Ready. The rig has none: the test lifts it.
	haEventually(r.t, "node "+name+" untainted", time.Minute, func() error {
		n, err := r.admin.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(n.Spec.Taints) == 0 {
			return nil
		}
		n.Spec.Taints = nil
		_, err = r.admin.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		if err == nil {
			err = errors.New("untainted; checking")
		}
		return err
	})
}

// namespace creates a namespace with hasched's RBAC from deploy/kubernetes
// and returns the kubeconfig of hasched's service account there (a token
// the API server issued), for hasched processes on this machine.
func (r *kubeRig) namespace(ns string) (kubeconfig string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := r.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		r.t.Fatalf("create namespace %s: %v", ns, err)
	}
	// Every namespace has a default service account, which Pods without
	// one of their own (hasched's tasks) are admitted with; the
	// controller-manager makes it in a cluster, the rig has none.
	if _, err := r.admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		r.t.Fatalf("create the default service account of %s: %v", ns, err)
	}
	account := ""
	for _, obj := range kubeManifest(r.t, "rbac.yaml") {
		var err error
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			account = o.Name
			_, err = r.admin.CoreV1().ServiceAccounts(ns).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.Role:
			_, err = r.admin.RbacV1().Roles(ns).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			for i := range o.Subjects {
				if o.Subjects[i].Kind == rbacv1.ServiceAccountKind {
					o.Subjects[i].Namespace = ns
				}
			}
			_, err = r.admin.RbacV1().RoleBindings(ns).Create(ctx, o, metav1.CreateOptions{})
		default:
			err = fmt.Errorf("unexpected %T", obj)
		}
		if err != nil {
			r.t.Fatalf("apply %s/rbac.yaml in %s: %v", kubeDeployDir, ns, err)
		}
	}
	if account == "" {
		r.t.Fatalf("%s/rbac.yaml has no ServiceAccount", kubeDeployDir)
	}
	exp := int64(3600)
	tok, err := r.admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, account,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		r.t.Fatalf("a token of service account %s/%s: %v", ns, account, err)
	}
	path := filepath.Join(r.dir, ns+".kubeconfig")
	writeKubeconfig(r.t, path, "https://"+r.apiserver.addr, r.caPEM, tok.Status.Token, ns)
	return path
}

// kubeManifest decodes a multi-document YAML file of deploy/kubernetes.
func kubeManifest(t testing.TB, name string) []runtime.Object {
	t.Helper()
	root, err := haModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, kubeDeployDir, name))
	if err != nil {
		t.Fatal(err)
	}
	var out []runtime.Object
	dec := yaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := dec.Read()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("%s: %v", name, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, obj)
	}
	return out
}

// removeNode is a node's loss as the cluster sees it: its Node object
// removed, then its Pods force-deleted, as kube-controller-manager's pod
// garbage collector does with the Pods of a node that no longer exists
// (after a 40 s quarantine, left out here).
func (r *kubeRig) removeNode(ctx context.Context, name string) {
	r.t.Helper()
	if err := r.admin.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		r.t.Fatalf("remove node %s: %v", name, err)
	}
	pods, err := r.admin.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + name})
	if err != nil {
		r.t.Fatalf("list the Pods of node %s: %v", name, err)
	}
	zero := int64(0)
	for _, p := range pods.Items {
		err := r.admin.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		if err != nil && !apierrors.IsNotFound(err) {
			r.t.Fatalf("force-delete Pod %s/%s of the lost node: %v", p.Namespace, p.Name, err)
		}
	}
}

// restart stops the API server's container and starts it again after
// down (it keeps its pinned port and its etcd).
func (r *kubeRig) restartAPIServer(down time.Duration) {
	r.t.Helper()
	r.apiserver.stop(r.t)
	time.Sleep(down)
	r.apiserver.start(r.t)
	r.waitReady(2 * time.Minute)
}

// writeCredentials writes the control plane's keys, certificates, tokens
// and in-network kubeconfig, and kwok's Stages, into r.dir.
func (r *kubeRig) writeCredentials(adminToken string) {
	t := r.t
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "hasched-test-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"apiserver", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	r.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	files := map[string][]byte{
		"ca.crt":        r.caPEM,
		"apiserver.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
		"apiserver.key": kubePEMKey(t, srvKey),
		"sa.key":        pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}),
		"sa.pub":        pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}),
		// The control plane's components and the tests are cluster-admin.
		"tokens.csv":  []byte(adminToken + `,hasched-test-admin,hasched-test-admin,"system:masters"` + "\n"),
		"stages.yaml": []byte(kubeStages),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(r.dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeKubeconfig(t, filepath.Join(r.dir, "admin.kubeconfig"), "https://apiserver:6443", r.caPEM, adminToken, "default")
}

func kubePEMKey(t testing.TB, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

func kubeRandomToken(t testing.TB) string {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// writeKubeconfig writes a one-context kubeconfig.
func writeKubeconfig(t testing.TB, path, server string, caPEM []byte, token, ns string) {
	t.Helper()
	ca := base64.StdEncoding.EncodeToString(caPEM)
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: test
  user:
    token: %s
contexts:
- name: test
  context: {cluster: test, user: test, namespace: %s}
current-context: test
`, server, ca, token, ns)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// kubePod is what the tests saw of one Pod (one UID) over its life.
type kubePod struct {
	Name, UID, Node string
	Job, TaskID     string
	Shard, Attempt  int
	FireMs          int64
	Term            string
	Created         time.Time
	Phase           corev1.PodPhase
	Deleted         bool
}

// kubeRecorder watches every Pod of a namespace and keeps each one it saw.
type kubeRecorder struct {
	t      testing.TB
	stop   chan struct{}
	mu     sync.Mutex
	pods   map[string]*kubePod // by UID
	byName map[string][]string // UIDs
}

// record starts watching the Pods of ns; it stops when the test ends.
func (r *kubeRig) record(ns string) *kubeRecorder {
	r.t.Helper()
	rec := &kubeRecorder{t: r.t, stop: make(chan struct{}), pods: map[string]*kubePod{}, byName: map[string][]string{}}
	f := informers.NewSharedInformerFactoryWithOptions(r.admin, 0, informers.WithNamespace(ns))
	inf := f.Core().V1().Pods().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { rec.saw(obj, false) },
		UpdateFunc: func(_, obj any) { rec.saw(obj, false) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			rec.saw(obj, true)
		},
	}); err != nil {
		r.t.Fatal(err)
	}
	f.Start(rec.stop)
	r.t.Cleanup(func() {
		close(rec.stop)
		f.Shutdown()
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		r.t.Fatalf("no list of the Pods of %s", ns)
	}
	return rec
}

func (rec *kubeRecorder) saw(obj any, deleted bool) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	uid := string(p.UID)
	k := rec.pods[uid]
	if k == nil {
		k = &kubePod{Name: p.Name, UID: uid, Created: p.CreationTimestamp.Time,
			Job: p.Labels["hasched.io/job"], TaskID: p.Annotations["hasched.io/task-id"], Term: p.Annotations["hasched.io/term"]}
		k.Shard, _ = strconv.Atoi(p.Labels["hasched.io/shard"])
		k.Attempt, _ = strconv.Atoi(p.Labels["hasched.io/attempt"])
		if ft, err := time.Parse(time.RFC3339Nano, p.Annotations["hasched.io/fire-time"]); err == nil {
			k.FireMs = ft.UnixMilli()
		}
		rec.pods[uid] = k
		rec.byName[p.Name] = append(rec.byName[p.Name], uid)
	}
	if p.Spec.NodeName != "" {
		k.Node = p.Spec.NodeName
	}
	k.Phase = p.Status.Phase
	k.Deleted = k.Deleted || deleted
}

// of is every Pod seen of job, in creation order.
func (rec *kubeRecorder) of(job string) []kubePod {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []kubePod
	for _, p := range rec.pods {
		if p.Job == job {
			out = append(out, *p)
		}
	}
	slices.SortFunc(out, func(a, b kubePod) int { return a.Created.Compare(b.Created) })
	return out
}

// fires are job's Pods as tick-job runs, for haExactlyOnce: one per Pod
// created.
func (rec *kubeRecorder) fires(job string) []haFire {
	var out []haFire
	for _, p := range rec.of(job) {
		out = append(out, haFire{fireMs: p.FireMs, shard: p.Shard, startNs: p.Created.UnixNano(), attempt: p.Attempt, taskID: p.TaskID})
	}
	return out
}

// reused lists the Pod names that were created more than once (a task id
// launched again after its Pod was gone): never right.
func (rec *kubeRecorder) reused() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []string
	for name, uids := range rec.byName {
		if len(uids) > 1 {
			out = append(out, fmt.Sprintf("%s (%d times)", name, len(uids)))
		}
	}
	slices.Sort(out)
	return out
}
