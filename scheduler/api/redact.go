package api

import (
	"net/url"
	"regexp"
	"strings"

	"github.com/hasched/hasched/scheduler/model"
)

// redacted replaces a secret in what the API shows.
const redacted = "REDACTED"

// secretQueryParams are query parameters whose values are credentials
// often put in package URLs (pre-signed and token-authenticated
// downloads).
var secretQueryParams = []string{"token", "access_token", "password", "secret", "key", "sig", "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token"}

// userinfoInText finds scheme://userinfo@ in free text (error messages),
// where a URL cannot be parsed out reliably.
var userinfoInText = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s"'<>]+@`)

// redactURL hides the userinfo (user:token@) and the secret query
// parameters of a URL: an app's appURL often carries the credentials of
// the repository its package is downloaded from, and a read of the app
// must not hand them to whoever may read.
func redactURL(raw string) string {
	if raw == "" {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return redactText(raw)
	}
	if u.User != nil {
		u.User = url.User(redacted)
	}
	if u.RawQuery != "" {
		q := u.Query()
		changed := false
		for k := range q {
			for _, s := range secretQueryParams {
				if strings.EqualFold(k, s) {
					q[k] = []string{redacted}
					changed = true
				}
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	return u.String()
}

// redactText hides URL userinfo anywhere in a text, such as an error that
// quotes a URL.
func redactText(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	return userinfoInText.ReplaceAllString(s, "${1}"+redacted+"@")
}

func redactApp(app model.App) model.App {
	app.AppURL = redactURL(app.AppURL)
	return app
}

func redactApps(apps []model.App) []model.App {
	out := make([]model.App, len(apps))
	for i, a := range apps {
		out[i] = redactApp(a)
	}
	return out
}
