# Two commands set everything up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_DIR := var/run
LOG_DIR := var/log
# `make up` runs the services against the local Redis and PostgreSQL.
UP_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/cxr
UP_REDIS_URL ?= redis://127.0.0.1:6379/0
SERVICES := ingestion inference formatting qa reconciler dimse
PORT ?= 8000

.PHONY: docker-tools compose-test install demo test test-fast bench lifecycle-example up down services-check orthanc ohif axe monitoring-tools dashboards clean apikey api-fuzz fuzz bench-stow-memory load chaos

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dicomweb,fhir,train]'
	touch $(STAMP)

demo: install
	@echo "== cxr-report run samples/chest_pa (embedded mode: SQLite + in-process queue)"
	@$(BIN)/cxr-report run samples/chest_pa --age 67 --sex M --indication "Shortness of breath"; \
	status=$$?; \
	if [ $$status -eq 3 ]; then echo "demo: the study was accepted and preprocessed, but no model bundle is installed (see README, 'Model bundle')."; fi; \
	exit $$status

# Redis and PostgreSQL are real services in the tests; start them if this machine has them stopped.
services-check:
	@if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then \
	  echo "starting redis"; redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null || true; sleep 1; fi
	@if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then \
	  echo "starting postgresql"; pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start || true; sleep 2; fi

# The PACS tests (tests/pacs, tests/dimse) run a real Orthanc with its DICOMweb plugin and dcmtk's
# echoscu / storescu / dsrdump: Debian's packages, installed once (apt-get update only when one is
# missing). On a host with systemd the package also starts a system Orthanc on 8042/4242; the tests
# do not use it (each starts its own on a free loopback port).
ORTHANC_DICOMWEB_PLUGIN := /usr/share/orthanc/plugins/libOrthancDicomWeb.so
orthanc:
	@if { [ -x /usr/sbin/Orthanc ] || command -v Orthanc >/dev/null 2>&1; } && [ -f $(ORTHANC_DICOMWEB_PLUGIN) ] \
	    && command -v storescu >/dev/null 2>&1 && command -v dsrdump >/dev/null 2>&1; then :; else \
	  echo "installing Debian packages orthanc orthanc-dicomweb dcmtk"; \
	  sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends orthanc orthanc-dicomweb dcmtk; \
	fi

# The OHIF viewer test (tests/viewer) shows our TID 1500 SR in the real OHIF viewer, in Debian's
# headless chromium driven by Playwright (never `playwright install`): chromium from apt (installed
# once), and OHIF's built viewer from the npm registry (`npm pack`), unpacked once per version into
# var/ohif/<version>/dist (git-ignored).
OHIF_VERSION := 3.13.2
OHIF_DIR := var/ohif/$(OHIF_VERSION)
ohif:
	@pkgs="$$([ -x /usr/bin/chromium ] || echo chromium fonts-dejavu-core) $$(command -v npm >/dev/null 2>&1 || echo npm)"; \
	if [ -n "$${pkgs// /}" ]; then \
	  echo "installing Debian packages $$pkgs"; \
	  sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$pkgs; \
	fi
	@if [ -f $(OHIF_DIR)/dist/index.html ] && [ -f $(OHIF_DIR)/dist/app-config.js ]; then :; else \
	  echo "fetching @ohif/app@$(OHIF_VERSION) from the npm registry into $(OHIF_DIR)"; \
	  rm -rf $(OHIF_DIR) && mkdir -p $(OHIF_DIR) \
	  && (cd $(OHIF_DIR) && npm pack --silent @ohif/app@$(OHIF_VERSION) >/dev/null) \
	  && tar -xzf $(OHIF_DIR)/ohif-app-$(OHIF_VERSION).tgz -C $(OHIF_DIR) --strip-components=1 package/dist \
	  && rm -f $(OHIF_DIR)/ohif-app-$(OHIF_VERSION).tgz \
	  && test -f $(OHIF_DIR)/dist/index.html || { echo "ohif: no dist/index.html in @ohif/app@$(OHIF_VERSION)"; rm -rf $(OHIF_DIR); exit 1; }; \
	fi

# The workstation's browser test (tests/workstation) checks accessibility with axe-core (MPL-2.0), run
# in the page by Playwright: its built axe.min.js from the npm registry, fetched once per version into
# var/axe/<version> (git-ignored; a test tool, never served by the platform).
AXE_VERSION := 4.11.0
AXE_DIR := var/axe/$(AXE_VERSION)
axe: ohif
	@if [ -f $(AXE_DIR)/axe.min.js ]; then :; else \
	  echo "fetching axe-core@$(AXE_VERSION) from the npm registry into $(AXE_DIR)"; \
	  rm -rf $(AXE_DIR) && mkdir -p $(AXE_DIR) \
	  && (cd $(AXE_DIR) && npm pack --silent axe-core@$(AXE_VERSION) >/dev/null) \
	  && tar -xzf $(AXE_DIR)/axe-core-$(AXE_VERSION).tgz -C $(AXE_DIR) --strip-components=1 package/axe.min.js package/LICENSE \
	  && rm -f $(AXE_DIR)/axe-core-$(AXE_VERSION).tgz \
	  && test -f $(AXE_DIR)/axe.min.js || { echo "axe: no axe.min.js in axe-core@$(AXE_VERSION)"; rm -rf $(AXE_DIR); exit 1; }; \
	fi

# promtool and amtool check the alert rules and Alertmanager's routes (tests/deploy), and the
# monitoring tests run a real Prometheus and Alertmanager: Debian's packages, installed once.
monitoring-tools:
	@if command -v promtool >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1 && command -v prometheus-alertmanager >/dev/null 2>&1; then :; else \
	  echo "installing Debian packages prometheus prometheus-alertmanager"; \
	  sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager; \
	fi

test: install services-check orthanc monitoring-tools ohif axe
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not integration"

bench: install
	@mkdir -p bench/results
	$(BIN)/python -m bench.run_all

# The model lifecycle end to end on real films (docs/lifecycle.md): ~2 minutes, bench/results/lifecycle-example.md
lifecycle-example: install
	@mkdir -p bench/results
	$(BIN)/python -m bench.lifecycle_example

up: install services-check
	@mkdir -p $(RUN_DIR) $(LOG_DIR)
	@psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='cxr'" | grep -q 1 \
	  || createdb -h 127.0.0.1 -U postgres cxr
	@DATABASE_URL=$(UP_DATABASE_URL) REDIS_URL=$(UP_REDIS_URL) $(BIN)/cxr-report db upgrade
	@for svc in $(SERVICES); do \
	  if [ -f $(RUN_DIR)/$$svc.pid ] && kill -0 $$(cat $(RUN_DIR)/$$svc.pid) 2>/dev/null; then echo "$$svc already running"; continue; fi; \
	  DATABASE_URL=$(UP_DATABASE_URL) REDIS_URL=$(UP_REDIS_URL) nohup $(BIN)/python -m services.$$svc >$(LOG_DIR)/$$svc.log 2>&1 & echo $$! >$(RUN_DIR)/$$svc.pid; \
	  echo "started $$svc (pid $$(cat $(RUN_DIR)/$$svc.pid), log $(LOG_DIR)/$$svc.log)"; \
	done
	@if [ -f $(RUN_DIR)/gateway.pid ] && kill -0 $$(cat $(RUN_DIR)/gateway.pid) 2>/dev/null; then echo "gateway already running"; else \
	  DATABASE_URL=$(UP_DATABASE_URL) REDIS_URL=$(UP_REDIS_URL) CXR_PORT=$(PORT) nohup $(BIN)/python -m services.gateway >$(LOG_DIR)/gateway.log 2>&1 & echo $$! >$(RUN_DIR)/gateway.pid; \
	  echo "started gateway on http://127.0.0.1:$(PORT) (pid $$(cat $(RUN_DIR)/gateway.pid), log $(LOG_DIR)/gateway.log)"; fi
	@echo "every endpoint but /healthz and /readyz needs credentials: make apikey ROLE=ehr (or pacs, radiologist, ops)"

# An API key for `make up`'s database, printed once: make apikey ROLE=ehr [NAME=...]
ROLE ?= ehr
NAME ?= $(ROLE) key made by make apikey
apikey: install
	@DATABASE_URL=$(UP_DATABASE_URL) $(BIN)/cxr-report apikey create --role $(ROLE) --name "$(NAME)"

down:
	@for svc in gateway $(SERVICES); do \
	  if [ -f $(RUN_DIR)/$$svc.pid ]; then pid=$$(cat $(RUN_DIR)/$$svc.pid); \
	    if kill -0 $$pid 2>/dev/null; then kill -TERM $$pid; echo "stopping $$svc (pid $$pid)"; fi; \
	    for i in $$(seq 1 30); do kill -0 $$pid 2>/dev/null || break; sleep 0.5; done; \
	    kill -0 $$pid 2>/dev/null && kill -KILL $$pid; rm -f $(RUN_DIR)/$$svc.pid; fi; \
	done

clean: down
	rm -rf var .pytest_cache

# schemathesis against a live gateway's OpenAPI document, with and without credentials (docs/reliability.md)
# The Grafana dashboards are code: regenerate deploy/grafana/dashboards/*.json after changing them.
dashboards: install
	$(BIN)/python -m libs.observability.dashboards

# Reliability figures (docs/reliability.md), each on a private Redis and PostgreSQL database:
# 50 clients for 2 minutes against the real model; 200 studies with 20 worker kills and 2 Redis restarts.
LOAD_ARGS ?= --clients 50 --seconds 120
CHAOS_ARGS ?= --studies 200 --kills 20 --redis-restarts 2
load: install services-check
	$(BIN)/python -m bench.reliability.load $(LOAD_ARGS)

chaos: install services-check
	$(BIN)/python -m bench.reliability.chaos $(CHAOS_ARGS)

api-fuzz: install
	@$(BIN)/python -c "import schemathesis" 2>/dev/null || $(BIN)/python -m pip install --quiet "schemathesis>=4.3,<5"
	$(BIN)/python -m bench.security.api_fuzz

# Fuzz the DICOM intake (docs/fuzzing.md): FUZZ_RUNS executions or FUZZ_SECONDS, whichever comes
# first; summary in bench/results/fuzz_intake.json, crashing inputs under fuzz/artifacts/.
FUZZ_RUNS ?= 1000000
FUZZ_SECONDS ?= 600
FUZZ_WORKERS ?= 0
fuzz: install
	@$(BIN)/python -c "import atheris" 2>/dev/null || $(BIN)/pip install --quiet atheris
	$(BIN)/python -m fuzz.run --runs $(FUZZ_RUNS) --seconds $(FUZZ_SECONDS) --workers $(FUZZ_WORKERS)

# gateway RSS while one ~600 MB STOW-RS body streams to disk (bench/results/stow_memory.json)
bench-stow-memory: install
	$(BIN)/python -m bench.stow_memory

# The whole docker-compose stack on images built here from a debootstrap Debian base, host network and
# loopback only: a real study through Orthanc to a report and back (deploy/docker, README Operations).
docker-tools:
	@if command -v docker >/dev/null 2>&1 && command -v docker-compose >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 && command -v dockerd >/dev/null 2>&1; then :; else \
	  echo "installing Debian packages docker.io docker-compose debootstrap"; \
	  sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends docker.io docker-compose debootstrap; \
	fi
	@if ! docker info >/dev/null 2>&1; then \
	  echo "starting dockerd (log var/log/dockerd.log)"; mkdir -p $(LOG_DIR); \
	  sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$sudo nohup dockerd >$(LOG_DIR)/dockerd.log 2>&1 & \
	  for i in $$(seq 1 30); do docker info >/dev/null 2>&1 && break; sleep 1; done; \
	  docker info >/dev/null 2>&1 || { echo "dockerd did not start: see $(LOG_DIR)/dockerd.log"; exit 1; }; \
	fi

compose-test: install docker-tools
	$(BIN)/python deploy/docker/compose_test.py
