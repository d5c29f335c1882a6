package console

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func serve(t *testing.T, method, path string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	h, err := Mount(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Next", r.Method+" "+r.URL.EscapedPath())
		w.WriteHeader(http.StatusTeapot)
	}))
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestServesThePageItsScriptAndItsStylesheet(t *testing.T) {
	for path, want := range map[string]struct{ ct, has string }{
		"/console/":            {"text/html", `<script src="console.js"`},
		"/console/console.js":  {"text/javascript", "'use strict'"},
		"/console/console.css": {"text/css", "--accent"},
	} {
		rec := serve(t, "GET", path)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s = %d, want 200", path, rec.Code)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, want.ct) {
			t.Errorf("GET %s: Content-Type %q, want %s", path, ct, want.ct)
		}
		if !strings.Contains(rec.Body.String(), want.has) {
			t.Errorf("GET %s: body lacks %q", path, want.has)
		}
	}
	// A browser pointed at the server, or at the bare prefix, finds the page.
	for _, path := range []string{"/", "/console"} {
		if rec := serve(t, "GET", path); rec.Code/100 != 3 || rec.Header().Get("Location") != "/console/" {
			t.Errorf("GET %s = %d to %q, want a redirect to /console/", path, rec.Code, rec.Header().Get("Location"))
		}
	}
}

// Everything that is not the console reaches the API as it was sent, with
// no cleaning of its path.
func TestOtherRequestsPassToTheAPIUntouched(t *testing.T) {
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/job/jobs"}, {"POST", "/"}, {"POST", "/console"}, {"GET", "/consoles"},
		{"GET", "/api//job/a%2Fb/../x"}, {"GET", "/healthz"},
	} {
		rec := serve(t, c.method, c.path)
		if want := c.method + " " + c.path; rec.Code != http.StatusTeapot || rec.Header().Get("X-Next") != want {
			t.Errorf("%s %s = %d, next saw %q; want it passed on as it was", c.method, c.path, rec.Code, rec.Header().Get("X-Next"))
		}
		if rec.Header().Get("Content-Security-Policy") != "" {
			t.Errorf("%s %s: the console's headers were set on an API response", c.method, c.path)
		}
	}
}

func TestEveryResponseCarriesTheSecurityHeaders(t *testing.T) {
	for _, path := range []string{"/console/", "/console/console.js", "/console/nope"} {
		rec := serve(t, "GET", path)
		h := rec.Header()
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("GET %s: CSP %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("GET %s: CSP %q allows inline or eval'd script", path, csp)
		}
		if got := h.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q", path, got)
		}
		if got := h.Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("GET %s: X-Frame-Options %q", path, got)
		}
	}
}

func TestUnknownPathsAre404AndNothingIsListed(t *testing.T) {
	for _, path := range []string{
		"/console/index.html", // the page is served at the prefix only
		"/console/assets/", "/console/assets/console.js", "/console/../console/console.js.map",
		"/console/nope.js", "/console/console.js/", "/console/.", "/console/%2e%2e/go.mod",
	} {
		rec := serve(t, "GET", path)
		if rec.Code == http.StatusOK {
			t.Errorf("GET %s = 200, want no such file:\n%.200s", path, rec.Body.String())
		}
	}
	for _, path := range []string{"/console/index.html", "/console/assets/", "/console/nope.js"} {
		if rec := serve(t, "GET", path); rec.Code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, rec.Code)
		}
	}
}

func TestOnlyReadsAreAnswered(t *testing.T) {
	rec := serve(t, "POST", "/console/")
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST /console/ = %d (Allow %q), want 405 allowing GET, HEAD", rec.Code, rec.Header().Get("Allow"))
	}
	if rec := serve(t, "HEAD", "/console/console.css"); rec.Code != http.StatusOK || rec.Body.Len() != 0 {
		t.Fatalf("HEAD = %d with %d bytes, want 200 and no body", rec.Code, rec.Body.Len())
	}
}

func TestARevalidationWithTheETagIs304(t *testing.T) {
	first := serve(t, "GET", "/console/console.js")
	etag := first.Header().Get("ETag")
	if etag == "" || first.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("ETag %q, Cache-Control %q: want an ETag and no-cache", etag, first.Header().Get("Cache-Control"))
	}
	if rec := serve(t, "GET", "/console/console.js", "If-None-Match", etag); rec.Code != http.StatusNotModified {
		t.Fatalf("revalidation = %d, want 304", rec.Code)
	}
}

// The CSP forbids inline script and style; the page must not rely on
// them, nor load anything from elsewhere, and the script must build its
// DOM from text only.
func TestTheAssetsKeepToThePolicy(t *testing.T) {
	page := serve(t, "GET", "/console/").Body.String()
	for _, re := range []string{`<script>`, `<script[^>]*>[^<]`, `<style`, `\sstyle=`, `\son[a-z]+=`, `(src|href)="(https?:)?//`} {
		if m := regexp.MustCompile(re).FindString(page); m != "" {
			t.Errorf("index.html has %q (matched %s)", m, re)
		}
	}
	js := serve(t, "GET", "/console/console.js").Body.String()
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "localStorage", "document.cookie", "http://", "https://"} {
		if strings.Contains(js, bad) {
			t.Errorf("console.js uses %s", bad)
		}
	}
	css := serve(t, "GET", "/console/console.css").Body.String()
	if strings.Contains(css, "@import") || strings.Contains(css, "url(") {
		t.Error("console.css loads something")
	}
}
