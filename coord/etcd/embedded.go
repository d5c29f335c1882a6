package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/hashicorp/go-hclog"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/lease"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/hasched/hasched/coord"
)

// EmbeddedConfig configures StartEmbedded.
type EmbeddedConfig struct {
	// Dir is the data directory; required.
	Dir string
	// ClientURL is where clients connect (default https://127.0.0.1:2379).
	// Port 0 picks a free port.
	//
	// With https:// the server accepts only clients with a certificate of
	// its own CA, which StartEmbedded makes in TLSDir (0600 files in a 0700
	// directory): nobody but the user running it can reach the data, which
	// any local user could otherwise change — and so make the scheduler run
	// what they like. ClientTLS is the client's configuration. http:// serves
	// every local process without a question, and is for tests only.
	ClientURL string
	// PeerURL is where peers would connect (default
	// https://127.0.0.1:2380). Port 0 picks a free port. With https://, peers
	// too need a certificate of the CA: a single member never talks to
	// peers, but its peer listener would otherwise take raft messages and
	// lease requests from anyone.
	PeerURL string
	// TLSDir keeps the CA, server and client certificates for https:// URLs
	// (default Dir/tls).
	TLSDir string
	// Name is the member's name (default "hasched").
	Name string
	// Logger receives the server's warnings and errors (null if nil).
	Logger hclog.Logger
}

// Embedded is a single-member etcd cluster running in this process, for
// development and tests.
type Embedded struct {
	etcd      *embed.Etcd
	endpoints []string
	pki       embeddedPKI // zero with plain http:// URLs
	closeOnce sync.Once
}

// StartEmbedded starts a single-member cluster and returns once it serves
// clients, or fails when ctx ends first.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.Dir == "" {
		return nil, errors.New("etcd: EmbeddedConfig.Dir is empty")
	}
	if cfg.ClientURL == "" {
		cfg.ClientURL = "https://127.0.0.1:2379"
	}
	if cfg.PeerURL == "" {
		cfg.PeerURL = "https://127.0.0.1:2380"
	}
	if cfg.TLSDir == "" {
		cfg.TLSDir = filepath.Join(cfg.Dir, "tls")
	}
	if cfg.Name == "" {
		cfg.Name = "hasched"
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	clientURL, err := listenURL(cfg.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("etcd: EmbeddedConfig.ClientURL: %w", err)
	}
	peerURL, err := listenURL(cfg.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("etcd: EmbeddedConfig.PeerURL: %w", err)
	}

	// etcd makes Dir 0700 itself, but the TLS directory goes in it first.
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("etcd: EmbeddedConfig.Dir: %w", err)
	}
	var certs embeddedPKI
	if clientURL.Scheme == "https" || peerURL.Scheme == "https" {
		if certs, err = preparePKI(cfg.TLSDir, clientURL, peerURL); err != nil {
			return nil, err
		}
	}
	serverTLS := func() transport.TLSInfo {
		return transport.TLSInfo{
			CertFile:       filepath.Join(certs.dir, serverCertFile),
			KeyFile:        filepath.Join(certs.dir, serverKeyFile),
			TrustedCAFile:  filepath.Join(certs.dir, caCertFile),
			ClientCertAuth: true,
		}
	}

	ec := embed.NewConfig()
	// NewConfig leaves the slow-request threshold at zero, which makes the
	// server warn about every request; use etcd's own default.
	ec.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	ec.Name = cfg.Name
	ec.Dir = cfg.Dir
	ec.ListenClientUrls = []url.URL{*clientURL}
	ec.AdvertiseClientUrls = []url.URL{*clientURL}
	ec.ListenPeerUrls = []url.URL{*peerURL}
	ec.AdvertisePeerUrls = []url.URL{*peerURL}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	if clientURL.Scheme == "https" {
		ec.ClientTLSInfo = serverTLS()
	}
	if peerURL.Scheme == "https" {
		ec.PeerTLSInfo = serverTLS()
	}
	// The server logs a lot at info level (every raft step, every
	// snapshot); its warnings and errors go to our logger, the rest nowhere.
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(newHclogCore(cfg.Logger.Named("etcd-server"), zapcore.WarnLevel)))

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("etcd: start embedded server in %s: %w", cfg.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd: embedded server failed while starting: %w", err)
	case <-e.Server.StopNotify():
		e.Close()
		return nil, errors.New("etcd: embedded server stopped while starting")
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("etcd: start embedded server: %w", ctx.Err())
	}
	return &Embedded{etcd: e, endpoints: []string{clientURL.String()}, pki: certs}, nil
}

// listenURL parses a URL to listen on; port 0 is replaced by a port that was
// free a moment ago, as etcd must advertise the port it listens on. Another
// process can take that port before etcd binds it; StartEmbedded then fails.
func listenURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%q: give http:// or https://", raw)
	}
	if u.Port() != "0" {
		return u, nil
	}
	ln, err := net.Listen("tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("find a free port on %s: %w", u.Hostname(), err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return nil, err
	}
	u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(port))
	return u, nil
}

// Endpoints are the client URLs to hand to Config.Endpoints.
func (e *Embedded) Endpoints() []string { return append([]string(nil), e.endpoints...) }

// ClientTLS is the TLS configuration a client of an https:// server needs
// (nil with http://): the CA and the client certificate made for hasched.
func (e *Embedded) ClientTLS() *tls.Config {
	if e.pki.client == nil {
		return nil
	}
	return e.pki.client.Clone()
}

// ClientTLSFiles names the files of ClientTLS, for an etcd:// URL
// (ca-file, cert-file, key-file) or etcdctl (--cacert, --cert, --key);
// zero with http://.
func (e *Embedded) ClientTLSFiles() coord.TLSFiles {
	if e.pki.client == nil {
		return coord.TLSFiles{}
	}
	return e.pki.files()
}

// Close stops the server and waits until it has stopped. It is idempotent.
func (e *Embedded) Close() error {
	e.closeOnce.Do(func() {
		e.etcd.Close()
		<-e.etcd.Server.StopNotify()
	})
	return nil
}

// EndPreviousSessions revokes every lease the member holds, ending the
// sessions (and so the leaderships and ephemeral nodes) of an earlier
// incarnation of this process, which would otherwise hold the election for
// their TTL after an unclean stop: nobody else opens sessions on an
// embedded member. Call it before this process opens any session. It
// returns how many sessions it ended.
func (e *Embedded) EndPreviousSessions(ctx context.Context) (int, error) {
	resp, err := e.etcd.Server.LeaseLeases(ctx, &pb.LeaseLeasesRequest{})
	if err != nil {
		return 0, fmt.Errorf("etcd: list the embedded member's leases: %w", err)
	}
	n := 0
	for _, l := range resp.Leases {
		_, err := e.etcd.Server.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: l.ID})
		if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) && !errors.Is(err, lease.ErrLeaseNotFound) {
			return n, fmt.Errorf("etcd: revoke lease %x: %w", l.ID, err)
		}
		n++
	}
	return n, nil
}
