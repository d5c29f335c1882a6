package zktest

import (
	"slices"
	"testing"
)

func TestServersSplitsTheList(t *testing.T) {
	t.Setenv(EnvServers, "a:2181,b:2181")
	if got := Servers(t); !slices.Equal(got, []string{"a:2181", "b:2181"}) {
		t.Fatalf("Servers = %q", got)
	}
}

func TestServersSkipsWithoutTheVariable(t *testing.T) {
	t.Setenv(EnvServers, "")
	skipped := true
	t.Run("inner", func(t *testing.T) {
		Servers(t)
		skipped = false
	})
	if skipped != true {
		t.Fatal("Servers did not skip the test")
	}
}
