package coord

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// ErrCredentials is returned when a certificate, key or secret named by a
// coordinator URL or Config cannot be read or used.
var ErrCredentials = errors.New("coord: unusable credentials")

// redacted replaces secrets in what RedactURL returns, as url.URL.Redacted
// does for a password.
const redacted = "xxxxx"

// secretParams are query parameters whose values are secrets themselves. The
// backends take secrets from files or the environment and refuse these, but
// a URL is redacted before it is known to be valid, so a misplaced secret
// still never reaches a log.
var secretParams = []string{"password", "digest", "auth", "secret", "token"}

// RedactURL returns a coordinator URL fit for logs and status pages: the
// password of its user information and the values of query parameters that
// could carry a secret are replaced by "xxxxx". A URL that does not parse is
// replaced as a whole, as it might hold anything.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL, redacted)"
	}
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			u.RawQuery = redacted
		} else {
			for k, vs := range q {
				if isSecretParam(k) {
					for i := range vs {
						vs[i] = redacted
					}
				}
			}
			u.RawQuery = q.Encode()
		}
	}
	return u.Redacted()
}

func isSecretParam(name string) bool {
	name = strings.ToLower(name)
	for _, s := range secretParams {
		// password-file and digest-env name where a secret is, not the
		// secret itself.
		if name == s || strings.HasPrefix(name, s) && !strings.HasSuffix(name, "-file") && !strings.HasSuffix(name, "-env") {
			return true
		}
	}
	return false
}

// ReadSecret returns the secret kept in file, or else in the environment
// variable env; with neither named it returns "". A file's trailing line
// break is dropped, as editors and `echo` add one. Secrets come from files
// or the environment so that they never appear on a command line, where
// every local user can read them in the process list.
func ReadSecret(file, env string) (string, error) {
	switch {
	case file != "" && env != "":
		return "", fmt.Errorf("%w: a secret from both the file %s and the variable %s: name one", ErrCredentials, file, env)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrCredentials, err)
		}
		s := strings.TrimRight(string(b), "\r\n")
		if s == "" {
			return "", fmt.Errorf("%w: %s is empty", ErrCredentials, file)
		}
		return s, nil
	case env != "":
		s, ok := os.LookupEnv(env)
		if !ok || s == "" {
			return "", fmt.Errorf("%w: the environment variable %s is not set", ErrCredentials, env)
		}
		return s, nil
	}
	return "", nil
}

// TLSFiles names the PEM files of a client's TLS configuration.
type TLSFiles struct {
	// CA is the certificates the server's is checked against; the system's
	// roots if empty.
	CA string
	// Cert and Key are the client's certificate and key, for servers that
	// ask for one; both or neither.
	Cert, Key string
	// ServerName is the name the server's certificate must carry, if not
	// the host dialled.
	ServerName string
}

// Config loads the files into a tls.Config of at least TLS 1.2.
func (f TLSFiles) Config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("%w: CA file: %w", ErrCredentials, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: CA file %s holds no PEM certificate", ErrCredentials, f.CA)
		}
		cfg.RootCAs = pool
	}
	if (f.Cert == "") != (f.Key == "") {
		return nil, fmt.Errorf("%w: a client certificate and its key go together (cert-file and key-file)", ErrCredentials)
	}
	if f.Cert != "" {
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("%w: client certificate %s, key %s: %w", ErrCredentials, f.Cert, f.Key, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
