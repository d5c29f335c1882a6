package local

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hasched/hasched/scheduler/executor"
)

// A running task's output is capped at MaxOutputBytes per stream, with one
// rotated generation holding the latest output.
func TestTaskOutputIsCappedAndRotated(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.MaxOutputBytes = minMaxOutputBytes
	e := newTestExec(t, cfg)
	tmp := t.TempDir()
	looped, resume, release := filepath.Join(tmp, "looped"), filepath.Join(tmp, "resume"), filepath.Join(tmp, "release")
	// About 1 MiB on each stream, sixteen times the cap; then, once the
	// rotation has settled, one last line each, then it stays. The last
	// lines wait because bytes written between a rotation's copy and its
	// truncation are lost by design (output.go): a line written then would
	// be in neither generation.
	tk := task("t-chatty", `i=0
while [ $i -lt 16384 ]; do
	echo "line $i 0123456789012345678901234567890123456789012345678901234567"
	echo "err $i 0123456789012345678901234567890123456789012345678901234567" >&2
	i=$((i+1))
done
: > `+shellQuote(looped)+`
`+waitForFile(resume)+`
echo END; echo ERR-END >&2
`+waitForFile(release))
	tk.Daemon = true
	e.launch(tk)
	dir := e.taskDir(tk.ID)
	size := func(name string) int64 {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	eventually(t, "output rotated within its cap", func() bool {
		_, err := os.Stat(looped)
		return err == nil && size("stdout") <= cfg.MaxOutputBytes && size("stderr") <= cfg.MaxOutputBytes &&
			size("stdout.1") > 0 && size("stderr.1") > 0
	})
	touch(t, resume)
	latest := func(stream, last string) bool {
		cur, _ := os.ReadFile(filepath.Join(dir, stream))
		prev, _ := os.ReadFile(filepath.Join(dir, stream+".1"))
		return strings.HasSuffix(string(cur), last) || (len(cur) == 0 && strings.HasSuffix(string(prev), last))
	}
	eventually(t, "the last lines kept", func() bool {
		return latest("stdout", "END\n") && latest("stderr", "ERR-END\n") &&
			size("stdout") <= cfg.MaxOutputBytes && size("stderr") <= cfg.MaxOutputBytes
	})
	for _, name := range []string{"stdout.1", "stderr.1"} {
		if n := size(name); n > cfg.MaxOutputBytes {
			t.Errorf("%s holds %d bytes, cap %d", name, n, cfg.MaxOutputBytes)
		}
	}
	touch(t, release)
	e.waitState(tk.ID, executor.StateFinished, false)
}

func TestRotateStream(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stdout")
	body := strings.Repeat("0123456789", 100)
	writeFile(t, path, []byte(body))
	if err := rotateStream(path, 2000); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".1"); !os.IsNotExist(err) {
		t.Errorf("rotated below the cap: %v", err)
	}
	if err := rotateStream(path, 100); err != nil {
		t.Fatal(err)
	}
	cur, _ := os.ReadFile(path)
	prev, _ := os.ReadFile(path + ".1")
	if len(cur) != 0 || string(prev) != body[len(body)-100:] {
		t.Errorf("after rotation: stream %q, previous %q", cur, prev)
	}
}

// The size and age settings take their defaults and refuse what is out of
// bounds.
func TestConfigBounds(t *testing.T) {
	cfg, err := Config{WorkDir: t.TempDir()}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxAppBytes != DefaultMaxAppBytes || cfg.AppCacheMaxBytes != DefaultAppCacheMaxBytes ||
		cfg.AppCacheMaxAge != DefaultAppCacheMaxAge || cfg.MaxOutputBytes != DefaultMaxOutputBytes {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	for name, c := range map[string]Config{
		"MaxAppBytes negative":     {MaxAppBytes: -1},
		"MaxAppBytes too large":    {MaxAppBytes: maxMaxAppBytes + 1},
		"AppCacheMaxBytes large":   {AppCacheMaxBytes: maxAppCacheMaxBytes + 1},
		"AppCacheMaxAge negative":  {AppCacheMaxAge: -1},
		"AppCacheMaxAge too large": {AppCacheMaxAge: maxAppCacheMaxAge + 1},
		"MaxOutputBytes too small": {MaxOutputBytes: minMaxOutputBytes - 1},
		"MaxOutputBytes too large": {MaxOutputBytes: maxMaxOutputBytes + 1},
	} {
		c.WorkDir = t.TempDir()
		if _, err := c.withDefaults(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
}
