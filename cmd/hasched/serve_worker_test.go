package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestServeWorkerFlags(t *testing.T) {
	base := serveFlags{coord: "zk://h:2181/ns", dataDir: "d", listen: "127.0.0.1:8899", executor: "cluster", logLevel: "info",
		worker: true, drainTimeout: time.Minute}
	cfg, err := base.validate()
	if err != nil || !cfg.worker || cfg.executor != "cluster" || cfg.drainTimeout != time.Minute || len(cfg.workerCfg.labels) != 0 {
		t.Fatalf("defaults: %+v, %v", cfg, err)
	}
	good := base
	good.workerName, good.workerCPUs, good.workerMemoryMB, good.workerLabels = "host-1", 3.5, 2048, "zone=a,rack=r1"
	cfg, err = good.validate()
	if err != nil || cfg.workerCfg.name != "host-1" || cfg.workerCfg.cpus != 3.5 || cfg.workerCfg.memoryMB != 2048 || cfg.workerCfg.labels["zone"] != "a" {
		t.Fatalf("given: %+v, %v", cfg.workerCfg, err)
	}
	off := base
	off.worker = false
	if cfg, err := off.validate(); err != nil || cfg.worker {
		t.Fatalf("--worker=false: worker %v, %v", cfg.worker, err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*serveFlags)
		want   string
	}{
		{"name with a slash", func(f *serveFlags) { f.workerName = "a/b" }, "--worker-name"},
		{"name with the separator", func(f *serveFlags) { f.workerName = "a~b" }, "--worker-name"},
		{"negative cpus", func(f *serveFlags) { f.workerCPUs = -1 }, "--worker-cpus"},
		{"NaN cpus", func(f *serveFlags) { f.workerCPUs = math.NaN() }, "--worker-cpus"},
		{"huge memory", func(f *serveFlags) { f.workerMemoryMB = 1e12 }, "--worker-memory-mb"},
		{"bad labels", func(f *serveFlags) { f.workerLabels = "zone" }, "--worker-labels"},
		{"negative drain", func(f *serveFlags) { f.drainTimeout = -time.Second }, "--drain-timeout"},
		{"zero drain", func(f *serveFlags) { f.drainTimeout = 0 }, "--drain-timeout"},
		{"year-long drain", func(f *serveFlags) { f.drainTimeout = 365 * 24 * time.Hour }, "--drain-timeout"},
		{"bad flags with the worker off", func(f *serveFlags) { f.worker = false; f.workerLabels = "=a" }, "--worker-labels"},
		{"--worker with the local executor", func(f *serveFlags) { f.executor = "local"; f.workerChanged = true }, "--worker runs tasks placed by --executor cluster"},
		{"unknown executor", func(f *serveFlags) { f.executor = "fleet" }, "use cluster, local, mesos or kubernetes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := base
			tc.mutate(&f)
			_, err := f.validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate = %v, want an error naming %q", err, tc.want)
			}
		})
	}
	// The worker flags' defaults do not trouble the other executors.
	local := base
	local.executor = "local"
	if cfg, err := local.validate(); err != nil || cfg.worker {
		t.Fatalf("--executor local: worker %v, %v", cfg.worker, err)
	}
}
