# Cloud Sandbox. `make run` starts a single-node cluster on local Docker;
# `make test` runs every test. Both build what they need first.
SHELL := /bin/bash
GO ?= go
BIN := bin
SANDBOX_IMAGE ?= python:3.11-slim
# The image `make image` builds from Debian's packages (no registry needed).
LOCAL_IMAGE ?= cloud-sandbox/python:3.11-slim
DATA_DIR ?= $(CURDIR)/.data

export CGO_ENABLED = 0

.PHONY: all build agent image run run-all test test-go test-attack test-nomad test-python bench bench-scale bench-failover vet clean gvisor

all: build

build: agent
	$(GO) build -o $(BIN)/sandboxd ./cmd/sandboxd
	$(GO) build -o $(BIN)/sandboxctl ./cmd/sandboxctl

# The agent must be static: it runs inside images we know nothing about.
agent:
	$(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/sandbox-agent ./cmd/sandbox-agent

# Builds the sandbox image from Debian's packages when it is missing.
image:
	@bash deploy/sandbox-image/build.sh "$(LOCAL_IMAGE)" "$(SANDBOX_IMAGE)"

# With PLACEMENT_DRIVER=nomad (after make nomad-dev) pause archives default to
# a local directory unless MINIO_ENDPOINT names S3-compatible storage.
run: build image
	@if [ "$${PLACEMENT_DRIVER:-}" = nomad ] && [ -z "$${MINIO_ENDPOINT:-}" ]; then export SANDBOX_ARCHIVE_DIR=$${SANDBOX_ARCHIVE_DIR:-$(DATA_DIR)/n1/archives}; fi; \
	SANDBOX_AGENT_BIN=$(CURDIR)/$(BIN)/sandbox-agent exec $(BIN)/sandboxd -data-dir $(DATA_DIR)/n1

vet:
	$(GO) vet ./...

test: agent image vet test-go test-python

# The Nomad suite (cmd/sandboxd, TestNomad*) runs here whenever a nomad
# binary is on PATH or in NOMAD_BIN; without one it is skipped, and said so.
test-go:
	@command -v $${NOMAD_BIN:-nomad} >/dev/null || echo "test-go: Nomad suite skipped: no nomad binary (put Nomad 1.6.5 on PATH or set NOMAD_BIN; make test-nomad requires it)"
	@docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"' || echo "test-go: gVisor suite skipped: Docker has no runsc runtime (run 'sudo make gvisor'; under CI=true it fails instead)"
	$(GO) test -count=1 -timeout 60m ./...

# Registers gVisor's runsc with Docker (root; SIGHUP, no restart), then runs
# the gVisor suite: the runc tests again with Runtime "runsc".
gvisor: agent image
	bash deploy/gvisor/setup.sh
	GVISOR_REQUIRED=1 $(GO) test -count=1 -timeout 20m -v -run 'GVisor' ./placement/docker/

# Only the Nomad suite, against a real Nomad dev agent it starts from
# deploy/nomad/; fails when no nomad binary is found.
# The security tests of issue 11, by name (they run in `make test` too).
test-attack: agent image
	$(GO) test -count=1 -timeout 20m -run 'TLS|Corrupt|Token|Revoke|Quota|Image|Bounds|Abuse|Egress|Stream|Production|Development|HTTPServer|Hollow' ./cluster/... ./fsm/... ./api/... ./placement/...
	$(GO) test -count=1 -timeout 5m -run 'K8sOverlays|ComposeFile|SecretsScript' ./cmd/sandboxd

test-nomad: agent image
	$(GO) test -count=1 -timeout 10m ./placement/nomad/...
	NOMAD_REQUIRED=1 $(GO) test -count=1 -timeout 20m -v -run 'Nomad' ./cmd/sandboxd

# Unit tests against an in-process fake server, then the integration tests
# against a live sandboxd that run_integration.sh starts and stops.
test-python: build image
	cd sdk/python && python3 -m unittest discover -s tests -p 'test_[!i]*.py'
	bash sdk/python/tests/run_integration.sh

# Medians side by side with the raw operations they replace, as ratios.
# Container-bound rows run fewer times: each costs real Docker work.
bench: agent image
	$(GO) test -run '^$$' -bench . -benchtime 30x ./cmd/sandboxd ./placement/docker
	$(GO) test -run '^$$' -bench . -benchtime 300x ./placement/agent ./api ./cluster ./fsm

# 10,000 sandboxes beside a 1,000 baseline: FSM load, acquire, heap and
# VmRSS, snapshot persist/restore, full scans; one Raft node: log entries
# and latency per acquire, snapshot, restart; the reconciler's cost after
# one change. No real driver.
bench-scale:
	$(GO) test -run '^$$' -bench Scale -benchtime 1x ./fsm ./cluster ./placement

# Write unavailability after a leader kill, RAFT_MULTIPLIER 1 beside the
# default (10 kills each; BENCH_RAFT_MULTIPLIERS=1,2,3 for others).
bench-failover:
	$(GO) test -run '^$$' -bench LeaderKill -benchtime 10x ./cluster

clean:
	rm -rf $(BIN) $(DATA_DIR)

# --- Deployments (deploy/README.md) ---------------------------------------
SANDBOXD_IMAGE ?= cloud-sandbox/sandboxd:dev
# Host dir mounted at the same path into every compose node: agent binary and
# sandbox sockets (Docker resolves bind sources on the host).
CLOUD_SANDBOX_DIR ?= /var/lib/cloud-sandbox
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
KUBECTL ?= kubectl

# Sandbox containers carry cloud-sandbox.cluster=<name>, egress helpers
# cloud-sandbox.cluster.egress=<name> (placement/docker). CLUSTER_NAME is the
# compose cluster's (docker-compose.yml's default); RUN_CLUSTER_NAME is make
# run's and make run-all's (sandboxd's -cluster-name default).
CLUSTER_NAME ?= cloud-sandbox
RUN_CLUSTER_NAME ?= cloud-sandbox

# $(call remove-sandboxes,names): docker rm -f every container so labelled.
define remove-sandboxes
docker info >/dev/null 2>&1 || { echo "docker is not reachable: no sandbox containers removed" >&2; exit 1; }; \
ids=$$(for c in $(1); do \
	docker ps -aq --filter "label=cloud-sandbox.cluster=$$c"; \
	docker ps -aq --filter "label=cloud-sandbox.cluster.egress=$$c"; \
done | sort -u); \
if [ -z "$$ids" ]; then echo "no sandbox containers of cluster $(1)"; \
else echo "removing $$(echo $$ids | wc -w) sandbox container(s) of cluster $(1)"; docker rm -f $$ids >/dev/null; fi
endef

.PHONY: clean-sandboxes sandboxd-image docker-image secrets compose-up compose-down k8s-dev k8s-prod k8s-delete-dev k8s-delete-prod nomad-dev nomad-dev-stop

# Three local sandboxd processes; ports in deploy/run-all.sh. Ctrl-C stops all.
run-all: build image
	@bash deploy/run-all.sh $(BIN) $(DATA_DIR)

# FROM scratch with the two static binaries: no registry needed.
sandboxd-image: build
	docker build -q -f deploy/sandboxd/Dockerfile -t $(SANDBOXD_IMAGE) $(BIN)

docker-image: sandboxd-image

# The production deployments' secrets, each made only when absent
# (deploy/secrets.sh): JWT secret, API keys and cluster TLS in deploy/secrets/
# for compose, and the prod overlay's files in deploy/k8s/prod/. Gitignored.
secrets: build
	@bash deploy/secrets.sh $(BIN)/sandboxd deploy/secrets deploy/k8s/prod

compose-up: secrets sandboxd-image image
	install -D -m 0755 $(BIN)/sandbox-agent $(CLOUD_SANDBOX_DIR)/bin/sandbox-agent
	CLOUD_SANDBOX_DIR=$(CLOUD_SANDBOX_DIR) SANDBOXD_IMAGE=$(SANDBOXD_IMAGE) $(COMPOSE) -f deploy/docker-compose.yml up -d

# Stopping sandboxd leaves its sandbox containers running on purpose (a
# restarted node adopts them), so compose-down removes them after the nodes
# are gone, or the pool would refill them. `docker compose down` needs the
# env_file to exist: when it is missing an empty one stands in and is
# removed again, so `make secrets` still writes the real one.
compose-down:
	@set -e; env_file=deploy/secrets/sandboxd.env; \
	if [ ! -e "$$env_file" ]; then \
		echo "compose-down: $$env_file is missing; an empty one stands in for docker compose down"; \
		mkdir -p "$$(dirname "$$env_file")"; : >"$$env_file"; trap 'rm -f "$$env_file"; rmdir deploy/secrets 2>/dev/null || true' EXIT; \
	fi; \
	CLOUD_SANDBOX_DIR=$(CLOUD_SANDBOX_DIR) $(COMPOSE) -f deploy/docker-compose.yml down
	@$(call remove-sandboxes,$(CLUSTER_NAME))

# Every sandbox container (and leftover egress helper) of CLUSTER_NAME and of
# make run / run-all's cluster. Stop the sandboxd nodes first: a running
# leader recreates its pool.
clean-sandboxes:
	@$(call remove-sandboxes,$(sort $(CLUSTER_NAME) $(RUN_CLUSTER_NAME)))

k8s-dev:
	$(KUBECTL) apply -k deploy/k8s/dev

k8s-prod: secrets
	$(KUBECTL) apply -k deploy/k8s/prod

k8s-delete-dev:
	$(KUBECTL) delete -k deploy/k8s/dev --ignore-not-found

k8s-delete-prod:
	$(KUBECTL) delete -k deploy/k8s/prod --ignore-not-found

# A single-node Nomad dev agent set up as a sandbox client from deploy/nomad/
# (its README): pause image, agent at /opt/cloud-sandbox/bin, firewall rules.
# Needs root and nomad on PATH (or NOMAD_BIN); prints NOMAD_ADDR.
NOMAD_DEV_DIR ?= $(DATA_DIR)/nomad-dev

nomad-dev:
	@bash deploy/nomad/dev.sh check
	@$(MAKE) --no-print-directory agent image
	@AGENT_BIN=$(CURDIR)/$(BIN)/sandbox-agent NOMAD_DEV_DIR=$(NOMAD_DEV_DIR) bash deploy/nomad/dev.sh start

nomad-dev-stop:
	@NOMAD_DEV_DIR=$(NOMAD_DEV_DIR) bash deploy/nomad/dev.sh stop
