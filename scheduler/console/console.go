// Package console is hasched's web console: one HTML page, one plain
// JavaScript file and one stylesheet, embedded in the binary and served
// by every process next to its REST API.
//
// The console holds no state and no data of its own: the page reads and
// writes through the REST API in the browser, with the API's login token,
// so its auth, its same-origin check on writes and its audit log apply to
// every click. The assets themselves are public (they are the same in
// every hasched), so they are served without credentials.
//
// Nothing it serves loads anything from elsewhere (no CDN, no fonts, no
// framework), and every response carries a Content-Security-Policy that
// keeps it so: scripts, styles and requests from this origin only, no
// inline script, no framing.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"time"
)

// Prefix is the path the console is served under; mount Handler there.
const Prefix = "/console/"

// ContentSecurityPolicy is set on every console response. 'self' is all
// the page needs: its own script and stylesheet, and fetches of /api/ on
// the same origin; data: images only for its empty icon, which spares the
// browser asking the API for a /favicon.ico it does not have.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; " +
	"form-action 'self'; frame-ancestors 'none'"

//go:embed assets
var assets embed.FS

// asset is one embedded file, read once.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// handler serves the assets by exact path: no file server, so no
// directory listing and nothing but the three files.
type handler struct {
	files map[string]asset
}

// Mount returns a handler that serves the console under Prefix, redirects
// a browser's GET of / or of Prefix without its slash to it, and passes
// every other request to next untouched. (Not an http.ServeMux: its path
// cleaning and redirects would change what the API's router sees.)
func Mount(next http.Handler) (http.Handler, error) {
	con, err := New()
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case strings.HasPrefix(p, Prefix):
			con.ServeHTTP(w, r)
		case (p == "/" || p+"/" == Prefix) && (r.Method == http.MethodGet || r.Method == http.MethodHead):
			http.Redirect(w, r, Prefix, http.StatusFound)
		default:
			next.ServeHTTP(w, r)
		}
	}), nil
}

// New returns the console's handler, to be mounted at Prefix. It answers
// GET and HEAD of Prefix (the page), of the script and of the
// stylesheet; anything else under Prefix is 404.
func New() (http.Handler, error) {
	h := &handler{files: map[string]asset{}}
	for name, ct := range map[string]string{
		"index.html":  "text/html; charset=utf-8",
		"console.js":  "text/javascript; charset=utf-8",
		"console.css": "text/css; charset=utf-8",
	} {
		b, err := fs.ReadFile(assets, "assets/"+name)
		if err != nil {
			return nil, fmt.Errorf("console: %w", err)
		}
		sum := sha256.Sum256(b)
		a := asset{body: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		if name == "index.html" {
			name = ""
		}
		h.files[Prefix+name] = a
	}
	return h, nil
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", ContentSecurityPolicy)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("X-Frame-Options", "DENY") // for browsers older than frame-ancestors
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("Cross-Origin-Opener-Policy", "same-origin")
	// Revalidated on every load (cheaply, by ETag), so that an upgraded
	// hasched never runs yesterday's script against today's API.
	hdr.Set("Cache-Control", "no-cache")

	a, ok := h.files[r.URL.Path]
	if !ok {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hdr.Set("Content-Type", a.contentType)
	hdr.Set("ETag", a.etag)
	// ServeContent answers If-None-Match (304), ranges and HEAD.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}
