package main

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// envPrefix: every flag can also be given as HASCHED_<FLAG>, the flag's
// name upper-cased with '-' as '_'. A flag on the command line wins.
const envPrefix = "HASCHED_"

// noEnv lists flags that are never read from the environment.
var noEnv = map[string]bool{"help": true, "file": true}

func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// usageError is a command line that cannot be run as written.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func isUsageError(err error) bool {
	var u *usageError
	return errors.As(err, &u)
}

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// exactArgs is cobra.ExactArgs with an error that names what is missing.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return usagef("%s needs %s", cmd.CommandPath(), strings.Join(names[len(args):], " "))
		case len(args) > len(names):
			return usagef("%s takes only %s; got %q", cmd.CommandPath(), strings.Join(names, " "), args)
		}
		for i, a := range args {
			if strings.TrimSpace(a) == "" {
				return usagef("%s: %s is empty", cmd.CommandPath(), names[i])
			}
		}
		return nil
	}
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments; got %q", cmd.CommandPath(), args)
	}
	return nil
}

func newRootCmd(lookupEnv func(string) (string, bool)) *cobra.Command {
	root := &cobra.Command{
		Use:   "hasched",
		Short: "A highly available job scheduler on etcd or ZooKeeper",
		Long: `hasched schedules cron jobs and keeps daemon jobs running, as Elastic-Job-Cloud
does, with every process of a cluster taking part in one leader election on
etcd or ZooKeeper. 'hasched serve' runs a scheduler process; the other commands
talk to one over its REST API (Elastic-Job-Cloud's paths and JSON).

Every flag can also be set through the environment as HASCHED_<FLAG>, for
example HASCHED_SERVER for --server; the flag wins.`,
		Example: `  # a single-process scheduler on an embedded etcd, data in ./data
  hasched serve

  # register an app and a job, and watch it run
  hasched app register -f app.json
  hasched job register -f job.json
  hasched tasks running`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnv(cmd, lookupEnv)
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.AddCommand(newServeCmd(), newAppCmd(), newJobCmd(), newTasksCmd(), newQuarantineCmd(), newWorkersCmd(), newLogsCmd(), newStatusCmd(), newBenchCmd(), newVersionCmd())
	root.AddCommand(newWatchdogCmd(), newFetchAppCmd())
	documentEnv(root)
	return root
}

// applyEnv sets every flag the command line left alone from its
// environment variable, if that is set and not empty.
func applyEnv(cmd *cobra.Command, lookupEnv func(string) (string, bool)) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || noEnv[f.Name] {
			return
		}
		name := envName(f.Name)
		v, ok := lookupEnv(name)
		if !ok || v == "" {
			return
		}
		if serr := f.Value.Set(v); serr != nil {
			err = usagef("%s=%q (for --%s): %v", name, v, f.Name, serr)
		}
	})
	return err
}

// documentEnv adds each flag's environment variable to its help text.
func documentEnv(root *cobra.Command) {
	seen := map[*pflag.Flag]bool{}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{c.LocalNonPersistentFlags(), c.PersistentFlags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				if seen[f] || noEnv[f.Name] {
					return
				}
				seen[f] = true
				f.Usage += fmt.Sprintf(" [$%s]", envName(f.Name))
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print hasched's version",
		Example: "  hasched version",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "hasched %s (%s %s/%s)\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}

// buildVersion is the version set at link time, else the module version
// `go install …@version` records.
func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}
