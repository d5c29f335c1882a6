# hasched — build, test and run. `make help` lists the targets.

GO        ?= go
BIN       ?= bin/hasched
# Unit tests: everything but the container-backed integration tests.
UNIT_PKGS  = $(shell $(GO) list ./... | grep -v /integration)
# testcontainers on machines without a registry: no Ryuk reaper (the tests
# remove their own containers) and no guessing the Docker host.
export TESTCONTAINERS_RYUK_DISABLED ?= true
export TESTCONTAINERS_HOST_OVERRIDE ?= 127.0.0.1
INTEGRATION_TIMEOUT ?= 30m
BENCHTIME ?= 2s

.PHONY: help build images test unit integration zk-server-tests run bench lint clean-containers

help:
	@echo "make run          start hasched on an embedded etcd (data in ./data)"
	@echo "make test         build the images, lint, unit tests (-race), integration tests"
	@echo "make build        build $(BIN)"
	@echo "make images       build the etcd and ZooKeeper test images locally"
	@echo "make bench        run the benchmarks against containers"
	@echo "make lint         gofmt and go vet"

build:
	$(GO) build -o $(BIN) ./cmd/hasched

images:
	bash images/build-etcd.sh
	bash images/build-zookeeper.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 $(UNIT_PKGS)

# Integration tests run without -race: go-zookeeper v1.0.4 races on its
# lastZxid field at reconnects (upstream PR #35), which would fail runs for a
# bug that is not ours. Our own packages get -race in `unit`, the backends
# included (coord/etcd runs the whole suite there on an embedded server).
integration: images
	$(GO) test -count=1 -timeout $(INTEGRATION_TIMEOUT) ./integration/...

# Tests that need one ZooKeeper server and read HASCHED_ZK_TEST_SERVERS: the
# ZooKeeper backend's own server tests (the suite itself runs in
# integration), master detection through ZooKeeper, and the fake master's
# registration there.
zk-server-tests: images
	bash integration/with-zookeeper.sh $(GO) test -count=1 -timeout 15m \
	  -skip '^TestConformance$$' ./coord/zk/... ./scheduler/mesos/... ./integration/mesosfake/...

test: lint unit integration zk-server-tests

run: build
	./$(BIN) serve

bench: images
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -timeout 30m ./integration/...

# Removes containers a killed test run left behind.
clean-containers:
	-docker ps -aq --filter label=dev.hasched.test | xargs -r docker rm -f
