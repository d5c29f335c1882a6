package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hasched/hasched/internal/client"
)

// These tests open the web console of a real `hasched serve` (embedded
// etcd, the default cluster executor with this process's worker) in a
// real headless Chromium, Debian's chromium package, driven over the
// DevTools protocol. Screenshots go to $HASCHED_TEST_ARTIFACTS/console (a
// temporary directory if unset); with HASCHED_UPDATE_SCREENSHOT=1 the
// first test also writes the README's docs/console.png.

// consoleJob's task runs long enough to be seen running in the page.
const consoleJob = "nightly_report"

func TestConsoleShowsJobsAndTriggersARunInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an embedded etcd and a browser (make test runs it)")
	}
	p := startConsoleProcess(t, serveFlags{})
	out := filepath.Join(t.TempDir(), "out")
	registerConsoleJob(t, p, out)
	// A second job, disabled, to be enabled and disabled again from the
	// page.
	x := ctxT(t)
	if _, err := p.client.RegisterJobJSON(x, []byte(`{"jobName":"cleanup_tmp","appName":"console_app","cron":"0 0/15 * * * ?","cpuCount":0.1,"memoryMB":32,"scriptCommandLine":"true"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.client.DisableJob(x, "cleanup_tmp"); err != nil {
		t.Fatal(err)
	}
	b := openBrowser(t, "jobs")

	b.do("the page loads and lists the job", 30*time.Second,
		chromedp.Navigate("http://"+p.addr+"/console/"),
		chromedp.WaitVisible(chromedp.CSS(`#jobs tr[data-job="`+consoleJob+`"]`)),
	)
	if s := b.text("#summary"); !strings.Contains(s, "leader, term") || !strings.Contains(s, p.addr) {
		t.Errorf("summary %q does not say this process (%s) leads", s, p.addr)
	}
	if s := b.text("#status"); !strings.Contains(s, "this process") || !strings.Contains(s, "cluster") {
		t.Errorf("overview %q lacks the leader or the executor", s)
	}
	row := `#jobs tr[data-job="` + consoleJob + `"]`
	if s := b.text(row); !strings.Contains(s, "0 0 3 * * ?") || !strings.Contains(s, "enabled") {
		t.Errorf("job row %q lacks its cron or its state", s)
	}
	// The cron fires at 03:00 every day: the next fire is hours away.
	if s := b.text(row + " td.next-fire"); !strings.Contains(s, "(in ") {
		t.Errorf("next fire time %q, want a time to come", s)
	}
	if s := b.text("#apps"); !strings.Contains(s, "console_app") {
		t.Errorf("apps table %q lacks the app", s)
	}
	// The worker registers a moment after the term starts: wait for it.
	b.do("the workers table shows this process's worker", 30*time.Second,
		waitTrue(`document.getElementById('workers').textContent.includes('`+p.addr+`')`),
	)
	b.screenshot("loaded")

	other := `#jobs tr[data-job="cleanup_tmp"]`
	if s := b.text(other); !strings.Contains(s, "disabled") {
		t.Errorf("disabled job's row %q does not say so", s)
	}
	b.do("enable the disabled job from the page", 30*time.Second,
		chromedp.Click(chromedp.CSS(other+" button.enable")),
		chromedp.WaitVisible(chromedp.CSS("#confirm-yes")),
		chromedp.Click(chromedp.CSS("#confirm-yes")),
		waitTrue(`document.getElementById('notice').textContent.includes('"cleanup_tmp" enabled')`),
		chromedp.WaitVisible(chromedp.CSS(other+" button.disable")),
	)
	if disabled, err := p.client.JobDisabled(ctxT(t), "cleanup_tmp"); err != nil || disabled {
		t.Fatalf("after Enable in the page the job is disabled=%v (%v)", disabled, err)
	}
	b.do("disable it again", 30*time.Second,
		chromedp.Click(chromedp.CSS(other+" button.disable")),
		chromedp.WaitVisible(chromedp.CSS("#confirm-yes")),
		chromedp.Click(chromedp.CSS("#confirm-yes")),
		waitTrue(`document.getElementById('notice').textContent.includes('"cleanup_tmp" disabled')`),
		chromedp.WaitVisible(chromedp.CSS(other+" button.enable")),
	)
	if disabled, err := p.client.JobDisabled(ctxT(t), "cleanup_tmp"); err != nil || !disabled {
		t.Fatalf("after Disable in the page the job is disabled=%v (%v)", disabled, err)
	}

	b.do("trigger the job from the page", 30*time.Second,
		chromedp.Click(chromedp.CSS(row+" button.trigger")),
		chromedp.WaitVisible(chromedp.CSS("#confirm-yes")),
		chromedp.Click(chromedp.CSS("#confirm-yes")),
		waitTrue(`document.getElementById('notice').textContent.includes('triggered')`),
	)
	// The task's id, read in the same poll that sees its row: the row
	// goes at the first refresh after the task ends.
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	taskID, err := chromedp.Run(ctx, chromedp.Poll[string](
		`document.querySelector('#running tr[data-job="`+consoleJob+`"]')?.cells[0].textContent`,
		chromedp.WithPollingTimeout(30*time.Second)))
	cancel()
	if err != nil || !strings.HasPrefix(taskID, consoleJob) {
		b.screenshot("failed")
		t.Fatalf("the run does not show among the running tasks: task id %q, %v", taskID, err)
	}
	if os.Getenv("HASCHED_UPDATE_SCREENSHOT") == "1" {
		png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "console.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b.screenshot("running")
	b.do("the task's stdout shows", 30*time.Second,
		chromedp.Click(chromedp.CSS(`#running tr[data-job="`+consoleJob+`"] button.stdout`)),
		waitTrue(`document.getElementById('log-text').textContent.includes('report ran')`),
	)
	b.screenshot("log")
	eventually(t, "the triggered task ran", 30*time.Second, func() error {
		if _, err := os.Stat(out); err != nil {
			return err
		}
		return nil
	})

	b.do("open the job's run history", 30*time.Second,
		chromedp.Click(chromedp.CSS(row+" button.history")),
		chromedp.WaitVisible(chromedp.CSS("#history")),
	)
	// The run ends (its task sleeps a few seconds) and is recorded.
	b.do("the run appears in the history", 60*time.Second,
		chromedp.WaitVisible(chromedp.CSS(`#runs tr[data-task^="`+consoleJob+`"]`)),
	)
	b.screenshot("history")
	b.checkConsole(false)
}

func TestConsoleLogsInAndShowsWrongCredentialsInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an embedded etcd and a browser (make test runs it)")
	}
	f := serveFlags{authUser: "admin", authPassword: "console-s3cret"}
	f.apiSec.authReads = true
	p := startConsoleProcess(t, f)
	// Registered with the admin account: reads and writes need one.
	registerConsoleJob(t, p, filepath.Join(t.TempDir(), "out"))
	b := openBrowser(t, "auth")

	b.do("the page asks for a login", 30*time.Second,
		chromedp.Navigate("http://"+p.addr+"/console/"),
		chromedp.WaitVisible(chromedp.CSS("#login")),
	)
	b.screenshot("login")
	b.do("wrong credentials are refused", 30*time.Second,
		chromedp.SendKeys(chromedp.CSS("#login-user"), "admin"),
		chromedp.SendKeys(chromedp.CSS("#login-password"), "wrong"),
		chromedp.Click(chromedp.CSS(`#login button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#login-error")),
	)
	if s := b.text("#login-error"); !strings.Contains(s, "Wrong user or password") {
		t.Errorf("login error %q", s)
	}
	if hidden, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`document.getElementById('main').hidden`)); err != nil || !hidden {
		t.Errorf("the console shows behind a failed login (hidden %v, %v)", hidden, err)
	}
	b.screenshot("login-refused")

	b.do("the right credentials let in", 30*time.Second,
		chromedp.Evaluate[chromedp.Void](`(document.getElementById('login-password').value = '', {})`),
		chromedp.SendKeys(chromedp.CSS("#login-password"), "console-s3cret"),
		chromedp.Click(chromedp.CSS(`#login button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#jobs tr[data-job="`+consoleJob+`"]`)),
	)
	// The token is the tab's: in sessionStorage, never a cookie or
	// localStorage.
	stored, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](
		`(sessionStorage.getItem('hasched.accessToken') || '').length > 20 && localStorage.length === 0 && document.cookie === ''`))
	if err != nil || !stored {
		t.Errorf("the token is not kept in sessionStorage alone (%v, %v)", stored, err)
	}
	// A write carries the token too.
	b.do("trigger with the token", 30*time.Second,
		chromedp.Click(chromedp.CSS(`#jobs tr[data-job="`+consoleJob+`"] button.trigger`)),
		chromedp.WaitVisible(chromedp.CSS("#confirm-yes")),
		chromedp.Click(chromedp.CSS("#confirm-yes")),
		waitTrue(`document.getElementById('notice').textContent.includes('triggered')`),
	)
	b.screenshot("logged-in")
	// The 401s of the refused login and of the first reads are expected
	// resource errors here.
	b.checkConsole(true)
}

// startConsoleProcess starts `hasched serve` as the quick start runs it:
// embedded etcd, the cluster executor, this process's worker.
func startConsoleProcess(t *testing.T, f serveFlags) *process {
	t.Helper()
	f.coord, f.embeddedClientURL, f.embeddedPeerURL = coordEmbedded, "http://127.0.0.1:0", "http://127.0.0.1:0"
	f.executor, f.worker, f.drainTimeout = "cluster", true, 10*time.Second
	f.logLevel = "info"
	p := startProcess(t, "console", f)
	if f.authUser != "" {
		var err error
		if p.client, err = client.New(client.Config{BaseURL: p.addr, User: f.authUser, Password: f.authPassword}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the process leads", 30*time.Second, func() error {
		_, _, err := leaderOf(t, p)
		return err
	})
	return p
}

// registerConsoleJob registers an app and a job whose task writes to out
// and then runs for a few seconds.
func registerConsoleJob(t *testing.T, p *process, out string) {
	t.Helper()
	x := ctxT(t)
	if _, err := p.client.RegisterAppJSON(x, []byte(`{"appName":"console_app","bootstrapScript":"true","cpuCount":0.1,"memoryMB":32}`)); err != nil {
		t.Fatal(err)
	}
	job := fmt.Sprintf(`{"jobName":%q,"appName":"console_app","cron":"0 0 3 * * ?","cpuCount":0.1,"memoryMB":32,`+
		`"scriptCommandLine":"echo report ran; echo done >> %s; sleep 8","description":"the console's test job"}`, consoleJob, out)
	if _, err := p.client.RegisterJobJSON(x, []byte(job)); err != nil {
		t.Fatal(err)
	}
}

// browser is one headless Chromium with one tab, for one test.
type browser struct {
	t   *testing.T
	ctx context.Context // the tab's
	dir string          // screenshots
	// console collects what the page wrote to its console.
	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

// openBrowser starts Chromium; the test fails if it is not installed (CI
// installs Debian's chromium package: .ci/run). The browser is closed,
// and its process waited for, when the test ends.
func openBrowser(t *testing.T, name string) *browser {
	t.Helper()
	exe, err := chromiumPath()
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("HASCHED_TEST_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	dir = filepath.Join(dir, "console", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	profile, err := os.MkdirTemp("", "hasched-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	// Every wait below is bounded by its own timeout; this bounds the
	// browser's whole life.
	root, cancelRoot := context.WithTimeout(context.Background(), 5*time.Minute)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox cannot start
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 800),
		chromedp.UserDataDir(profile),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(root, opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	b := &browser{t: t, ctx: ctx, dir: dir}

	// The first run starts the browser, bound to ctx (not to a timeout's
	// child, which would end it).
	if err := chromedp.Do(ctx); err != nil {
		cancelTab()
		cancelAlloc()
		cancelRoot()
		_ = os.RemoveAll(profile)
		t.Fatalf("start %s: %v", exe, err)
	}
	// The README's screenshot is this viewport.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("set the viewport: %v", err)
	}
	listened := make(chan struct{})
	go func() {
		defer close(listened)
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		closeCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
		if err := chromedp.Cancel(closeCtx); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("close the browser: %v", err)
		}
		cancel()
		cancelTab()
		cancelAlloc() // kills the browser if it is still there, and waits for it
		cancelRoot()
		<-listened
		_ = os.RemoveAll(profile)
		if t.Failed() {
			t.Logf("screenshots in %s; the page's console:\n%s", dir, b.consoleText())
		}
	})
	return b
}

// chromiumPath finds Debian's chromium (or another Chromium-based
// browser under its usual names).
func chromiumPath() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium on PATH: the console's browser tests need it (apt-get install chromium; .ci/run installs it)")
}

// do runs steps within timeout; on failure it keeps a screenshot of the
// page as it was and fails the test.
func (b *browser) do(what string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.screenshot("failed")
		b.t.Fatalf("%s: %v (screenshot in %s)", what, err, b.dir)
	}
}

// text is the visible text of the first element sel matches.
func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// screenshot keeps the whole page as name.png among the artifacts.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(b.dir, name+".png"), png, 0o644); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
	}
}

// checkConsole fails the test on an uncaught exception or a refusal by the
// Content-Security-Policy, and on any other error the page logged unless
// the test expects refused requests (Chromium logs every failed fetch: a
// 401 before the login, the 404 of an endpoint this hasched lacks).
func (b *browser) checkConsole(resourceErrorsExpected bool) {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.console {
		switch {
		case m.IsException():
			b.t.Errorf("uncaught exception in the page: %s", m.Text)
		case strings.Contains(m.Text, "Content Security Policy"):
			b.t.Errorf("the page broke its Content-Security-Policy: %s", m.Text)
		case m.Type == chromedp.ConsoleError && !resourceErrorsExpected && !strings.Contains(m.Text, "404"):
			// A 404 is the missing history or log endpoint, which the
			// page reports itself.
			b.t.Errorf("the page logged an error: %s", m.Text)
		}
	}
}

func (b *browser) consoleText() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var s strings.Builder
	for _, m := range b.console {
		fmt.Fprintf(&s, "  %s: %s (%s)\n", m.Type, m.Text, m.URL)
	}
	return s.String()
}

// waitTrue waits until a JavaScript expression is true, for at most 30s
// (in the page; the caller's context may end it sooner).
func waitTrue(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(30*time.Second))
}
