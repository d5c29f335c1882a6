package api

import (
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// checkOrigin refuses a write a browser sends from another site. A page
// anywhere on the web can make a browser POST to 127.0.0.1:8899 without a
// preflight (a "simple" request, e.g. text/plain); browsers mark such
// requests with Origin and Sec-Fetch-Site, which a page cannot forge.
// Clients that are not browsers send neither and pass.
func checkOrigin(r *http.Request) error {
	if strings.EqualFold(r.Header.Get("Sec-Fetch-Site"), "cross-site") {
		return ErrCrossOrigin
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	// "null" (sandboxed frames, file: pages) is never this API's own page.
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || origin == "null" {
		return ErrCrossOrigin
	}
	tlsOn := r.TLS != nil
	if !strings.EqualFold(withDefaultPort(u.Host, u.Scheme == "https"), withDefaultPort(r.Host, tlsOn)) {
		return ErrCrossOrigin
	}
	return nil
}

// withDefaultPort adds the scheme's port to a host that has none, so that
// "example.com" and "example.com:80" compare equal.
func withDefaultPort(host string, https bool) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	if https {
		return net.JoinHostPort(strings.Trim(host, "[]"), "443")
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), "80")
}

// checkContentType requires a write that has a body to declare it as JSON.
// Elastic-Job-Cloud's clients do, even for the bare job name of trigger and
// deregister; a browser cannot send application/json cross-site without a
// preflight, which this API never grants.
func checkContentType(r *http.Request) error {
	if r.ContentLength == 0 {
		return nil
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return ErrUnsupportedMediaType
	}
	return nil
}
