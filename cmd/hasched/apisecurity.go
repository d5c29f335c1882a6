package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/hasched/hasched/scheduler/api"
)

// Flag names the checks below quote in their errors.
const (
	flagInsecureNoAuth     = "insecure-no-auth-on-network"
	flagInsecureForwarding = "insecure-plain-http-forwarding"
)

// maxSecretFile caps a password file: a password, not a document.
const maxSecretFile = 4 << 10

// errSecretFile is a password file that cannot be used.
var errSecretFile = errors.New("password file")

// apiSecurityFlags are serve's flags for the REST API's auth and TLS (the
// admin account's --auth-user and --auth-password are in serveFlags).
type apiSecurityFlags struct {
	insecureNoAuthOnNetwork bool
	authPasswordFile        string
	readOnlyUser            string
	readOnlyPassword        string
	readOnlyPasswordFile    string
	authReads               bool
	tokenTTL                time.Duration
	tlsCert, tlsKey         string
	tlsClientCA             string
	tlsCA                   string
	insecureForwarding      bool
	// Set when a password was given on the command line, where every user
	// of the host can read it (ps, /proc/<pid>/cmdline).
	passwordOnCommandLine         bool
	readOnlyPasswordOnCommandLine bool
}

func (a *apiSecurityFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&a.insecureNoAuthOnNetwork, flagInsecureNoAuth, false, "DANGEROUS: allow --listen on a non-loopback address without --auth-user; anyone who reaches the port can then run commands on this host through jobs")
	fs.StringVar(&a.authPasswordFile, "auth-password-file", "", "file holding the password of --auth-user (its first line); preferred to --auth-password, which other users see in ps")
	fs.StringVar(&a.readOnlyUser, "auth-readonly-user", "", "a second account, which may read but not write (403); needs --auth-user")
	fs.StringVar(&a.readOnlyPassword, "auth-readonly-password", "", "the password of --auth-readonly-user (visible in ps: prefer --auth-readonly-password-file or the environment)")
	fs.StringVar(&a.readOnlyPasswordFile, "auth-readonly-password-file", "", "file holding the password of --auth-readonly-user")
	fs.BoolVar(&a.authReads, "auth-reads", false, "reads need an account too (/healthz and /readyz stay open)")
	fs.DurationVar(&a.tokenTTL, "auth-token-ttl", api.DefaultTokenTTL, "lifetime of a token from POST /api/login (at most 168h)")
	fs.StringVar(&a.tlsCert, "tls-cert", "", "serve the REST API over https with this PEM certificate (with --tls-key); standbys then forward writes to the leader over https")
	fs.StringVar(&a.tlsKey, "tls-key", "", "the PEM private key of --tls-cert")
	fs.StringVar(&a.tlsClientCA, "tls-client-ca", "", "PEM CA bundle: require a client certificate it signed on every connection (processes forwarding to each other present --tls-cert)")
	fs.StringVar(&a.tlsCA, "tls-ca", "", "PEM CA bundle to verify the leader's certificate with when forwarding (default: the system's roots)")
	fs.BoolVar(&a.insecureForwarding, flagInsecureForwarding, false, "DANGEROUS: let a standby send the admin credentials over plain http to a leader on another host")
}

// apiSecurityConfig is the validated form.
type apiSecurityConfig struct {
	readOnlyUser, readOnlyPassword string
	authReads                      bool
	tokenTTL                       time.Duration
	// serverTLS is nil without --tls-cert.
	serverTLS  *tls.Config
	forwardTLS *tls.Config
	// insecureForwarding: --insecure-plain-http-forwarding.
	insecureForwarding bool
	// warnings are logged when the process starts.
	warnings []string
}

// validateAPISecurity reads the password files and certificates and checks
// the API's exposure: a listener other hosts can reach needs an account,
// unless the operator says otherwise in so many words. It sets the admin
// password in cfg (from a file if so given).
func validateAPISecurity(f serveFlags, cfg *serveConfig) error {
	a := f.apiSec
	out := apiSecurityConfig{authReads: a.authReads, tokenTTL: a.tokenTTL, insecureForwarding: a.insecureForwarding}

	password, err := secretFrom("--auth-password", f.authPassword, "--auth-password-file", a.authPasswordFile, a.passwordOnCommandLine, &out.warnings)
	if err != nil {
		return err
	}
	if (f.authUser == "") != (password == "") {
		return usagef("--auth-user and --auth-password (or --auth-password-file) go together: set both or neither")
	}
	cfg.authUser, cfg.authPassword = f.authUser, password

	roPassword, err := secretFrom("--auth-readonly-password", a.readOnlyPassword, "--auth-readonly-password-file", a.readOnlyPasswordFile, a.readOnlyPasswordOnCommandLine, &out.warnings)
	if err != nil {
		return err
	}
	if (a.readOnlyUser == "") != (roPassword == "") {
		return usagef("--auth-readonly-user and --auth-readonly-password (or --auth-readonly-password-file) go together: set both or neither")
	}
	if a.readOnlyUser != "" && f.authUser == "" {
		return usagef("--auth-readonly-user needs --auth-user: there must be an admin account")
	}
	if a.readOnlyUser != "" && a.readOnlyUser == f.authUser {
		return usagef("--auth-readonly-user %q is also --auth-user", a.readOnlyUser)
	}
	out.readOnlyUser, out.readOnlyPassword = a.readOnlyUser, roPassword
	if a.authReads && f.authUser == "" {
		return usagef("--auth-reads needs --auth-user")
	}
	if a.tokenTTL < 0 || a.tokenTTL > 7*24*time.Hour {
		return usagef("--auth-token-ttl %v: give a duration up to 168h", a.tokenTTL)
	}

	if out.serverTLS, out.forwardTLS, err = loadAPITLS(a); err != nil {
		return err
	}

	if !isLoopbackListen(cfg.listenHost) {
		switch {
		case f.authUser == "" && !a.insecureNoAuthOnNetwork:
			return usagef("--listen %s is reachable from other hosts and no --auth-user is set: anyone who reaches it could run commands here through jobs. "+
				"Set --auth-user with --auth-password-file (or $HASCHED_AUTH_PASSWORD), listen on 127.0.0.1, or, if the network is yours alone, pass --%s",
				cfg.listen, flagInsecureNoAuth)
		case f.authUser == "":
			out.warnings = append(out.warnings, fmt.Sprintf("--%s: the REST API accepts anonymous writes on %s; anyone who reaches it can run commands on this host", flagInsecureNoAuth, cfg.listen))
		case out.serverTLS == nil:
			out.warnings = append(out.warnings, fmt.Sprintf("--listen %s is reachable from other hosts over plain http: passwords and tokens cross the network in clear text; set --tls-cert and --tls-key", cfg.listen))
		}
	}
	if a.insecureForwarding {
		out.warnings = append(out.warnings, fmt.Sprintf("--%s: standbys send the admin credentials in clear text to a leader on another host", flagInsecureForwarding))
	}
	cfg.apiSec = out
	return nil
}

// secretFrom picks a password given as a value (flag or environment) or a
// file; both at once is an error.
func secretFrom(flag, value, fileFlag, file string, onCommandLine bool, warnings *[]string) (string, error) {
	switch {
	case value != "" && file != "":
		return "", usagef("%s and %s both set: give one", flag, fileFlag)
	case file != "":
		s, err := readSecretFile(file)
		if err != nil {
			return "", usagef("%s: %v", fileFlag, err)
		}
		if fi, err := os.Stat(file); err == nil && fi.Mode().Perm()&0o077 != 0 {
			*warnings = append(*warnings, fmt.Sprintf("%s %s is readable by other users (mode %v); chmod 600 it", fileFlag, file, fi.Mode().Perm()))
		}
		return s, nil
	}
	if onCommandLine && value != "" {
		*warnings = append(*warnings, fmt.Sprintf("%s on the command line is visible to every user of this host (ps); use %s or the environment ($%s)", flag, fileFlag, envName(strings.TrimPrefix(flag, "--"))))
	}
	return value, nil
}

// readSecretFile reads a password: the file's first line, without its line
// end. An empty one is refused rather than taken as "no password".
func readSecretFile(path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("%w %s: %v", errSecretFile, path, err)
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("%w %s is larger than %d bytes", errSecretFile, path, maxSecretFile)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimRight(line, "\r")
	if line == "" {
		return "", fmt.Errorf("%w %s is empty", errSecretFile, path)
	}
	return line, nil
}

// apiSecretEnv are the environment variables that may hold the API's
// passwords (the _FILE variants only name a file).
var apiSecretEnv = []string{"HASCHED_AUTH_PASSWORD", "HASCHED_AUTH_READONLY_PASSWORD"}

// dropAPISecretsFromEnv removes the API's passwords from this process's
// environment once they are read: the local executor starts tasks with
// an environment inherited from this process, and a job's command must not
// find the admin password in it.
func dropAPISecretsFromEnv() {
	for _, name := range apiSecretEnv {
		_ = os.Unsetenv(name)
	}
}

// isLoopbackListen says whether a --listen host is reachable from this host
// only. An empty host or a wildcard address is every interface; a name
// other than localhost may resolve to anything.
func isLoopbackListen(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
