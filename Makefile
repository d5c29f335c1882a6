# hasched — build, test and run. `make help` lists the targets.

GO        ?= go
BIN       ?= bin/hasched
# Unit tests: everything but the container-backed integration tests.
UNIT_PKGS  = $(shell $(GO) list ./... | grep -v /integration)
# testcontainers on machines without a registry: no Ryuk reaper (the tests
# remove their own containers) and no guessing the Docker host.
export TESTCONTAINERS_RYUK_DISABLED ?= true
export TESTCONTAINERS_HOST_OVERRIDE ?= 127.0.0.1
# What tests keep for a person to look at (the console's screenshots).
export HASCHED_TEST_ARTIFACTS ?= $(CURDIR)/test-artifacts
INTEGRATION_TIMEOUT ?= 45m
BENCHTIME ?= 2s
# Each fuzz target runs this many inputs in `make fuzz` (and so in `make
# test`): about 5-8 s each here, so six targets and their builds keep
# `make fuzz` near one minute.
# A count, not a duration: with a duration, go1.26's fuzz coordinator can
# fail a target with a bare "context deadline exceeded" at the deadline
# when the machine is busy (golang/go#75804, fixed in go1.27); a count has
# no deadline to race.
FUZZTIME ?= 200000x
# The fuzz targets, as package:target: what a user or another store writer
# can hand the decoders, the path rules and the cron parser.
FUZZ_TARGETS = \
	./scheduler/model:FuzzDecodeJob \
	./scheduler/model:FuzzDecodeJobUpdate \
	./scheduler/model:FuzzDecodeApp \
	./scheduler/cron:FuzzParse \
	./coord:FuzzValidateNodePath \
	./coord:FuzzValidateName

.PHONY: help build images hasched-image kube-image test unit fuzz integration zk-server-tests run bench lint clean-containers

help:
	@echo "make run          start hasched on an embedded etcd (data in ./data)"
	@echo "make test         build the images, lint, unit tests (-race), fuzz, integration tests"
	@echo "make build        build $(BIN)"
	@echo "make images       build the etcd, ZooKeeper and PostgreSQL test images locally"
	@echo "make hasched-image build the several-hosts tests' image of this checkout's hasched"
	@echo "make kube-image   build the Kubernetes control-plane test image (only when missing)"
	@echo "make bench        run the benchmarks against containers"
	@echo "make lint         gofmt and go vet"
	@echo "make fuzz         run each fuzz target FUZZTIME times ($(FUZZTIME))"

build:
	$(GO) build -o $(BIN) ./cmd/hasched

images:
	bash images/build-etcd.sh
	bash images/build-zookeeper.sh
	bash images/build-postgres.sh

# The several-hosts tests' image: this checkout's hasched on the ZooKeeper
# image's root file system. Rebuilt on every run (the binary changes with
# every commit; the layer is cheap).
hasched-image: images
	GO=$(GO) bash images/build-hasched.sh

# The Kubernetes executor's tests' control plane (kube-apiserver,
# kube-scheduler, kwok): minutes to compile on two cores, so built only when
# the image is missing (FORCE=1 rebuilds).
kube-image:
	GO=$(GO) bash images/build-kube.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 $(UNIT_PKGS)

# go test fuzzes one target of one package per run.
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz $$pkg $$name, $(FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

# Integration tests run without -race: go-zookeeper v1.0.4 races on its
# lastZxid field at reconnects (upstream PR #35), which would fail runs for a
# bug that is not ours. Our own packages get -race in `unit`, the backends
# included (coord/etcd runs the whole suite there on an embedded server).
integration: images hasched-image kube-image
	$(GO) test -count=1 -timeout $(INTEGRATION_TIMEOUT) ./integration/...

# Tests that need one ZooKeeper server and read HASCHED_ZK_TEST_SERVERS: the
# ZooKeeper backend's own server tests (the suite itself runs in
# integration), master detection through ZooKeeper, and the fake master's
# registration there; and the scheduler's and the store's tests named
# OnZooKeeper (the rest of their packages runs in `unit`).
zk-server-tests: images
	bash integration/with-zookeeper.sh $(GO) test -count=1 -timeout 15m \
	  -skip '^TestConformance$$' ./coord/zk/... ./scheduler/mesos/... ./integration/mesosfake/...
	bash integration/with-zookeeper.sh $(GO) test -count=1 -timeout 15m \
	  -run 'OnZooKeeper$$' ./scheduler ./scheduler/store ./cmd/hasched

test: lint unit fuzz integration zk-server-tests

run: build
	./$(BIN) serve

bench: images
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -timeout 30m ./integration/...
	$(GO) test -run '^$$' -bench 'CreateVersusRaw|Handover|MirrorSyncList' -benchtime 200x ./coord/etcd/
	$(GO) test -run '^$$' -bench 'RegisterJobs' -benchtime 10000x ./scheduler/
	$(GO) test -run '^$$' -bench 'LoadEtcd|EstablishEtcd|ListJobs' -benchtime 1x -timeout 30m ./scheduler/

# Removes containers a killed test run left behind.
clean-containers:
	-docker ps -aq --filter label=dev.hasched.test | xargs -r docker rm -f
