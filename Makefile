# Stepwise: build, test and demo against a real local Kubernetes control plane.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help
export PATH := $(CURDIR)/.tools/bin:$(HOME)/.cargo/bin:$(PATH)

.PHONY: build-dev test-build help packages-demo packages-test tools tools-cluster cluster cluster-down build test test-unit demo bench bench-peers crds lint fmt install chaos gitops test-gitops test-kstatus

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

packages-demo: ## install the Debian packages the cluster and the demo need, when missing
	scripts/system-packages.sh demo

packages-test: ## install the Debian packages the test suites need, when missing
	scripts/system-packages.sh test

tools: ## build everything from pinned Go modules into .tools/bin (control plane, kwok, helm, Flux, kstatus)
	scripts/tools.sh

tools-cluster: ## build only what the local cluster and the demo run (etcd, kube-*, kubectl, kwok, kubelet)
	scripts/tools.sh kubernetes kubelet etcd kwok

cluster: packages-demo tools-cluster ## start the local control plane (idempotent); kubeconfig in .cluster/kubeconfig
	scripts/cluster.sh up

gitops: cluster ## start Flux (source- and kustomize-controller) and a local git server next to the cluster
	scripts/tools.sh flux
	scripts/gitops.sh up

test-gitops: packages-test tools ## only the Flux end-to-end tests (tests/gitops.sh)
	scripts/with-cluster.sh tests/gitops.sh

test-kstatus: packages-test tools ## only the kstatus checks of the operator's statuses (tests/kstatus.sh)
	scripts/with-cluster.sh tests/kstatus.sh

cluster-down: ## stop exactly what `make cluster` started (and Flux, the demo's operator) and remove its state
	scripts/cluster.sh down

build: ## build the operator and the kubectl plugin (release)
	cargo build --release --bins

test: packages-test ## unit + integration tests; starts the local cluster when none runs, stops what it started
	@# The Go tools and the Rust test build use the two cores side by side.
	$(MAKE) --no-print-directory -j2 tools test-build
	scripts/with-cluster.sh scripts/test.sh

test-build: ## build every test binary (what `make test` runs), without running them
	cargo test --workspace --no-run --lib --bins --tests

test-unit: ## tests that need no cluster
	cargo test --workspace --lib --bins

chaos: packages-demo tools-cluster ## the crash test at full size: 50 releases, 20 SIGKILLs of the operator
	STEPWISE_CHAOS_RELEASES=50 STEPWISE_CHAOS_KILLS=20 scripts/with-cluster.sh cargo test --test operations survives_sigkill -- --nocapture

crds: ## regenerate crds/ from the Rust types
	cargo run --release --bin stepwise -- crds > crds/stepwise.dev.yaml
	scripts/gen-deploy.sh

lint: ## rustfmt, clippy (warnings are errors, functions under 80 lines) and files under 400 lines
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	scripts/check-size.sh

fmt:
	cargo fmt --all

demo: packages-demo ## local cluster + CRDs + operator + sample releases with a retry and guided failure
	@# The demo runs the debug build that `make test` builds too: half the cold build time of a release.
	$(MAKE) --no-print-directory -j2 tools-cluster build-dev
	scripts/demo.sh

build-dev: ## build the operator and the kubectl plugin (debug, as the demo and the shell test suites run them)
	cargo build --bins

bench: packages-demo tools-cluster build ## measure timing, throughput, API writes and footprint into BENCHMARKS.md
	scripts/with-cluster.sh scripts/bench.sh

bench-peers: packages-demo tools-cluster build ## only the peers phase: Stepwise, Tekton and Argo on the same workloads (BENCH_PEERS_*)
	scripts/build-peers.sh
	BENCH_PHASES=peers scripts/with-cluster.sh scripts/bench.sh

install: build ## put stepwise and kubectl-stepwise on PATH (PREFIX=/usr/local)
	install -m 0755 target/release/stepwise target/release/kubectl-stepwise $(or $(PREFIX),/usr/local)/bin/
