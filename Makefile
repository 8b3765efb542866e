# Stepwise: build, test and demo against a real local Kubernetes control plane.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help
export PATH := $(CURDIR)/.tools/bin:$(HOME)/.cargo/bin:$(PATH)

.PHONY: help tools cluster cluster-down build test test-unit demo bench crds lint fmt install chaos gitops test-gitops test-kstatus

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

tools: ## build etcd, kube-*, kubectl, kwok and helm from pinned Go modules into .tools/bin
	scripts/tools.sh

cluster: tools ## start the local control plane (idempotent); kubeconfig in .cluster/kubeconfig
	scripts/cluster.sh up

gitops: cluster ## start Flux (source- and kustomize-controller) and a local git server next to the cluster
	scripts/gitops.sh up

test-gitops: tools ## only the Flux end-to-end tests (tests/gitops.sh)
	scripts/with-cluster.sh tests/gitops.sh

test-kstatus: tools ## only the kstatus checks of the operator's statuses (tests/kstatus.sh)
	scripts/with-cluster.sh tests/kstatus.sh

cluster-down: ## stop exactly what `make cluster` started (and Flux, the demo's operator) and remove its state
	scripts/cluster.sh down

build: ## build the operator and the kubectl plugin (release)
	cargo build --release --bins

test: tools ## unit + integration tests; starts the local cluster when none runs, stops what it started
	scripts/with-cluster.sh scripts/test.sh

test-unit: ## tests that need no cluster
	cargo test --lib --bins

chaos: tools ## the crash test at full size: 50 releases, 20 SIGKILLs of the operator
	STEPWISE_CHAOS_RELEASES=50 STEPWISE_CHAOS_KILLS=20 scripts/with-cluster.sh cargo test --test operations survives_sigkill -- --nocapture

crds: ## regenerate crds/ from the Rust types
	cargo run --release --bin stepwise -- crds > crds/stepwise.dev.yaml
	scripts/gen-deploy.sh

lint: ## rustfmt and clippy, warnings are errors
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

fmt:
	cargo fmt --all

demo: tools build ## local cluster + CRDs + operator + sample releases with a retry and guided failure
	scripts/demo.sh

bench: tools build ## measure timing, throughput, API writes and footprint into BENCHMARKS.md
	scripts/with-cluster.sh scripts/bench.sh

install: build ## put stepwise and kubectl-stepwise on PATH (PREFIX=/usr/local)
	install -m 0755 target/release/stepwise target/release/kubectl-stepwise $(or $(PREFIX),/usr/local)/bin/
