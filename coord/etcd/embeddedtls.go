package etcd

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/internal/pki"
)

// The files of the embedded server's TLS directory. Every one is 0600 in a
// 0700 directory: whoever can read ca.key can mint a client certificate the
// server accepts, and whoever can read client.key is a client.
const (
	caCertFile     = "ca.crt"
	caKeyFile      = "ca.key"
	serverCertFile = "server.crt"
	serverKeyFile  = "server.key"
	clientCertFile = "client.crt"
	clientKeyFile  = "client.key"
)

// ErrInsecureTLSDir is returned when the embedded server's TLS directory is
// open to other users and cannot be closed.
var ErrInsecureTLSDir = errors.New("etcd: the embedded server's TLS directory is open to other users")

// embeddedPKI is the embedded server's certificates, in dir.
type embeddedPKI struct {
	dir    string
	client *tls.Config
}

// files names the client's PEM files, for a URL or etcdctl.
func (p embeddedPKI) files() coord.TLSFiles {
	return coord.TLSFiles{
		CA:   filepath.Join(p.dir, caCertFile),
		Cert: filepath.Join(p.dir, clientCertFile),
		Key:  filepath.Join(p.dir, clientKeyFile),
	}
}

// preparePKI makes dir's certificates: the CA on first start (or again when
// its key is missing or was readable by others, when it may have been
// copied), and at every start a server certificate for the hosts of urls
// and a client certificate for hasched. Issuing the leaves again at every
// start costs a few milliseconds and means a changed client or peer URL
// never meets a certificate without its host.
func preparePKI(dir string, urls ...*url.URL) (embeddedPKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return embeddedPKI{}, fmt.Errorf("etcd: TLS directory: %w", err)
	}
	// MkdirAll leaves an existing directory's mode alone.
	if err := os.Chmod(dir, 0o700); err != nil {
		return embeddedPKI{}, fmt.Errorf("%w: %s: %w", ErrInsecureTLSDir, dir, err)
	}
	ca, err := loadCA(dir)
	if err != nil {
		if ca, err = pki.NewCA("hasched embedded etcd CA"); err != nil {
			return embeddedPKI{}, fmt.Errorf("etcd: make the embedded server's CA: %w", err)
		}
		if err := writePrivate(dir, caKeyFile, ca.KeyPEM); err != nil {
			return embeddedPKI{}, err
		}
		if err := writePrivate(dir, caCertFile, ca.CertPEM); err != nil {
			return embeddedPKI{}, err
		}
	}
	hosts := []string{"127.0.0.1", "::1", "localhost"}
	for _, u := range urls {
		hosts = append(hosts, u.Hostname())
	}
	server, err := ca.Issue("hasched embedded etcd", hosts...)
	if err != nil {
		return embeddedPKI{}, fmt.Errorf("etcd: issue the embedded server's certificate: %w", err)
	}
	client, err := ca.Issue("hasched")
	if err != nil {
		return embeddedPKI{}, fmt.Errorf("etcd: issue the embedded server's client certificate: %w", err)
	}
	for name, b := range map[string][]byte{
		serverKeyFile: server.KeyPEM, serverCertFile: server.CertPEM,
		clientKeyFile: client.KeyPEM, clientCertFile: client.CertPEM,
	} {
		if err := writePrivate(dir, name, b); err != nil {
			return embeddedPKI{}, err
		}
	}
	cert, err := tls.X509KeyPair(client.CertPEM, client.KeyPEM)
	if err != nil {
		return embeddedPKI{}, fmt.Errorf("etcd: the embedded server's client certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM)
	return embeddedPKI{dir: dir, client: &tls.Config{
		MinVersion:   tls.VersionTLS12,
		RootCAs:      roots,
		Certificates: []tls.Certificate{cert},
	}}, nil
}

// loadCA reads dir's CA; it fails when the key is missing, unreadable, or
// was open to other users.
func loadCA(dir string) (*pki.CA, error) {
	keyPath := filepath.Join(dir, caKeyFile)
	fi, err := os.Stat(keyPath)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v", ErrInsecureTLSDir, keyPath, fi.Mode().Perm())
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, caCertFile))
	if err != nil {
		return nil, err
	}
	return pki.LoadCA(certPEM, keyPEM)
}

// writePrivate writes name in dir with mode 0600, through a temporary file
// and a rename so that a crash never leaves half a key; the file is created
// 0600, never opened wider first.
func writePrivate(dir, name string, b []byte) error {
	f, err := os.CreateTemp(dir, name+".tmp-*")
	if err != nil {
		return fmt.Errorf("etcd: TLS directory: %w", err)
	}
	tmp := f.Name()
	_, werr := f.Write(b)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp, 0o600) // CreateTemp's 0600 is under the umask already; say it anyway
	}
	if werr == nil {
		werr = os.Rename(tmp, filepath.Join(dir, name))
	}
	if werr != nil {
		if rerr := os.Remove(tmp); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			werr = errors.Join(werr, rerr)
		}
		return fmt.Errorf("etcd: write %s: %w", filepath.Join(dir, name), werr)
	}
	return nil
}
