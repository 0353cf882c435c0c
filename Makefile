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

.PHONY: all build agent image run run-all test test-go test-python bench vet clean

all: build

build: agent
	$(GO) build -o $(BIN)/sandboxd ./cmd/sandboxd

# The agent must be static: it runs inside images we know nothing about.
agent:
	$(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/sandbox-agent ./cmd/sandbox-agent

# Builds the sandbox image from Debian's packages when it is missing.
image:
	@bash deploy/sandbox-image/build.sh "$(LOCAL_IMAGE)" "$(SANDBOX_IMAGE)"

run: build image
	SANDBOX_AGENT_BIN=$(CURDIR)/$(BIN)/sandbox-agent $(BIN)/sandboxd -data-dir $(DATA_DIR)/n1

vet:
	$(GO) vet ./...

test: agent image vet test-go test-python

test-go:
	SANDBOX_AGENT_BIN=$(CURDIR)/$(BIN)/sandbox-agent $(GO) test -count=1 -timeout 60m ./...

test-python:
	@if [ -d sdk/python/tests ]; then cd sdk/python && python3 -m unittest discover -s tests -v; fi

bench: agent image
	SANDBOX_AGENT_BIN=$(CURDIR)/$(BIN)/sandbox-agent $(GO) test -run '^$$' -bench . -benchtime 200x ./...

clean:
	rm -rf $(BIN) $(DATA_DIR)
