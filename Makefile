# kioskd: see README.md. Every target works on a fresh machine with only Go installed;
# targets that need a service (mosquitto, chromium) say so and skip cleanly without it.
GO        ?= go
PKGS      := ./...
BIN       := bin
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
ERRCHECK    := github.com/kisielk/errcheck@v1.30.0
CMDS      := kioskd kioskctl kioskbench ledgerd fleetd hw-sim demo
# Fuzz targets run by `make fuzz` (package:target), FUZZTIME each.
FUZZTIME  ?= 20s
# Crash campaign: SIGKILLs per acceptor protocol, and which protocols (id003, ccnet, ssp: the
# daemon of a pulse unit runs in the test process, so make sim crashes pulse kiosks instead).
CRASHES   ?= 200
CRASH_PROTOCOLS ?= id003,ccnet,ssp
# Extra campaign flags, e.g. CRASH_FLAGS="-crash.powercut=0 -e2e.linespeed=all" (SIGKILL only,
# every emulator at its serial line's speed), -crash.seed=N to replay a campaign.
CRASH_FLAGS ?=

.PHONY: all demo test test-short bench build cross lint fuzz crash clean

all: lint test build

## demo: run the whole system on this machine (simulated hardware, embedded broker, ledger)
demo:
	$(GO) run ./cmd/demo

## test: every test, race detector on (services that are absent are skipped with a message)
# The acceptor conformance suite runs with the engine's crash points compiled in (its crash
# rows kill an in-process host at them); every other package runs as the product is built.
# TestSimMemory runs with them too, as make sim does: that a simulated run leaves nothing
# behind (a campaign of hours runs tens of thousands of them in one process). The session
# tests that fill the disk at a crash point (between a stack intent and its seal) need them.
test:
	$(GO) test -race -timeout 15m $$($(GO) list $(PKGS) | grep -v '/devices/acceptor/conformance$$')
	$(GO) test -race -timeout 15m -tags kioskd_failpoints ./devices/acceptor/conformance
	$(GO) test -race -timeout 15m -tags kioskd_failpoints -run '^TestSimMemory$$' ./kiosk/sim
	$(GO) test -race -timeout 15m -tags kioskd_failpoints -run '^TestSentBack' ./kiosk/session

test-short:
	$(GO) test -short $(PKGS)

## bench: benchmarks, printed as a table with ratios against same-run baselines
bench:
	$(GO) run ./cmd/kioskbench

build:
	@mkdir -p $(BIN)
	for c in $(CMDS); do CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/$$c ./cmd/$$c || exit 1; done

## cross: static builds for the kiosk boards (arm64 and armhf)
cross:
	@mkdir -p $(BIN)/linux-arm64 $(BIN)/linux-armv7
	for c in $(CMDS); do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/linux-arm64/$$c ./cmd/$$c || exit 1; \
	  CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/linux-armv7/$$c ./cmd/$$c || exit 1; \
	done

## lint: gofmt, go vet, staticcheck and unchecked errors (pinned versions, fetched by go run)
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)
	$(GO) run $(ERRCHECK) -ignoretests -exclude .ci/errcheck-excludes.txt $(PKGS)

## fuzz: run every fuzz target for FUZZTIME (.ci/fuzz-target tells a finding from Go 1.26's
## own deadline race, go.dev/issue/75804)
fuzz:
	@grep -rlE '^func Fuzz' --include='*_test.go' . | while read f; do \
	  pkg=./$$(dirname $$f); \
	  for name in $$(grep -oE '^func Fuzz[A-Za-z0-9_]+' $$f | sed 's/^func //'); do \
	    echo "== $$pkg $$name"; \
	    GO=$(GO) .ci/fuzz-target $$pkg $$name $(FUZZTIME) || exit 1; \
	  done; \
	done

## crash: kill kioskd at every step of the journal protocol and at random, with power cuts;
## prints crashes=N notes=M violations=V last and fails when V > 0
crash:
	@rm -f .crash-summary
	KIOSKD_CRASH_SUMMARY=$(CURDIR)/.crash-summary $(GO) test -count=1 -timeout 85m -run '^TestCrashCampaign$$' ./kiosk/e2e \
	  -args -crash.n=$(CRASHES) -crash.protocols=$(CRASH_PROTOCOLS) $(CRASH_FLAGS); rc=$$?; \
	  cat .crash-summary 2>/dev/null || echo "crashes=0 notes=0 violations=unknown (campaign did not finish)"; exit $$rc

## sim: the deterministic whole-kiosk simulation (kiosk/sim): SIM_RUNS seeded runs from SIM_SEED
## (0: from the clock), or as many as fit in SIM_DURATION (e.g. 2h); prints the campaign's
## memory (live heap, peak RSS: flat however long it runs) and
## runs=N crashes=M faults=K violations=V seed=S last and fails when V > 0
SIM_RUNS     ?= 200
SIM_SEED     ?= 0
SIM_DURATION ?= 0
SIM_FLAGS    ?=
.PHONY: sim
sim:
	@mkdir -p $(BIN) && rm -f $(BIN)/sim-summary
	KIOSKD_SIM_SUMMARY=$(CURDIR)/$(BIN)/sim-summary KIOSKD_SIM_TRACE=$(CURDIR)/$(BIN)/sim-current.trace $(GO) test -count=1 -timeout 0 -tags kioskd_failpoints -run '^TestSim(FixedSeeds)?$$' ./kiosk/sim \
	  -args -sim.runs=$(SIM_RUNS) -sim.seed=$(SIM_SEED) -sim.duration=$(SIM_DURATION) $(SIM_FLAGS); rc=$$?; \
	  if [ ! -s $(BIN)/sim-summary ]; then for f in $(BIN)/sim-current.trace*; do echo "== the last run of a worker ($$f):"; tail -n 40 $$f; done; fi; \
	  cat $(BIN)/sim-summary 2>/dev/null || echo "runs=0 crashes=0 faults=0 violations=unknown seed=$(SIM_SEED) (simulation did not finish)"; exit $$rc

## loadtest: LOAD_KIOSKS simulated kiosks (each its own journal outbox, uplink, MQTT connection
## and client certificate) against mosquitto running deploy/mosquitto (TLS, ACL), two ledger
## instances sharing the top-ups, and PostgreSQL. Prints sustained top-ups/s, ack latency
## p50/p99, the reconnect storm, the backlog drain against raw QoS 1 publishing, and
## lost/doubled; fails unless both are 0. Needs mosquitto, openssl and PostgreSQL: without
## them it says which is missing and fails. LOAD_FLAGS e.g. "-load.rate=200 -load.strict".
LOAD_KIOSKS   ?= 1000
LOAD_DURATION ?= 60s
LOAD_RATE     ?= 50
LOAD_BACKLOG  ?= 10000
LOAD_FLAGS    ?=
LOAD_TIMEOUT  ?= 30m
.PHONY: loadtest
loadtest:
	cd sync/loadtest && KIOSKD_REQUIRE_SERVICES=1 $(GO) test -count=1 -timeout $(LOAD_TIMEOUT) -run '^TestLoad$$' \
	  -args -load -load.kiosks=$(LOAD_KIOSKS) -load.duration=$(LOAD_DURATION) -load.rate=$(LOAD_RATE) \
	  -load.backlog=$(LOAD_BACKLOG) $(LOAD_FLAGS)

## deb: Debian packages of kioskd for arm64, armhf and amd64 in bin/deb/ (deploy/README.md);
## same tree, same bytes (times from SOURCE_DATE_EPOCH, default the last commit's time)
.PHONY: deb
DEB_ARCHES   ?= amd64 arm64 armhf
NFPM_VERSION ?= v2.48.0
NFPM         := $(BIN)/tools/nfpm-$(NFPM_VERSION)/nfpm
DEB_VERSION  ?= $(shell deploy/deb/version.sh)
DEB_EPOCH    ?= $(or $(SOURCE_DATE_EPOCH),$(shell git log -1 --format=%ct 2>/dev/null),0)
deb:
	@mkdir -p $(BIN)/deb/.work
	test -x $(NFPM) || GOBIN=$(CURDIR)/$(dir $(NFPM)) $(GO) install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)
	sed -e '/^@SYSUSERS@$$/{r deploy/deb/kioskd.sysusers' -e 'd;}' deploy/deb/preinst.in > $(BIN)/deb/.work/preinst
	rm -f $(BIN)/deb/kioskd_*.deb
	for a in $(DEB_ARCHES); do \
	  case $$a in amd64) nf=amd64 goarch=amd64 goarm= ;; arm64) nf=arm64 goarch=arm64 goarm= ;; \
	    armhf) nf=arm7 goarch=arm goarm=7 ;; *) echo "deb: unknown architecture $$a"; exit 1 ;; esac; \
	  st=$(BIN)/deb/.work/$$a; mkdir -p $$st; \
	  for c in kioskd kioskctl; do \
	    CGO_ENABLED=0 GOOS=linux GOARCH=$$goarch GOARM=$$goarm $(GO) build -trimpath -ldflags '-s -w -X main.version=$(DEB_VERSION)' -o $$st/$$c ./cmd/$$c || exit 1; \
	  done; \
	  DEB_ARCH=$$nf KIOSKD_DEB_VERSION=$(DEB_VERSION) KIOSKD_STAGE=$$st SOURCE_DATE_EPOCH=$(DEB_EPOCH) \
	    $(NFPM) package --config deploy/deb/nfpm.yaml --packager deb --target $(BIN)/deb/ || exit 1; \
	done
	@ls -l $(BIN)/deb/*.deb

clean:
	rm -rf $(BIN) .demo .crash-summary
