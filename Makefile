# meshward: build the Wasm filters, test them in the harness and in a real Envoy, run a demo.
# `make run` and `make test` are the two commands most people need; README.md says more.

SHELL := /bin/bash
CARGO ?= cargo
WASM_TARGET := wasm32-wasip1
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
export ENVOY_VERSION := 1.40.0

# Every crate built to Wasm: each filters/<name> becomes out/<name>.wasm, each
# harness/fixtures/<name> becomes out/fixture-<name>.wasm. The lists come from the folders,
# so a new filter needs no change here.
WASM_DIRS := $(patsubst %/Cargo.toml,%,$(sort $(wildcard filters/*/Cargo.toml harness/fixtures/*/Cargo.toml)))
package_of = $(shell sed -n 's/^name *= *"\(.*\)"/\1/p' $(1)/Cargo.toml | head -n 1)
out_name_of = $(if $(filter harness/fixtures/%,$(1)),fixture-)$(notdir $(1))
WASM_PACKAGES := $(foreach d,$(WASM_DIRS),$(call package_of,$(d)))
# Modules that bundle other filters (filters/chain) depend on them without their entry
# points; built in the same cargo run as those filters, feature unification would turn the
# entry points back on and the link would fail on duplicate exports. So each builds alone.
BUNDLE_DIRS := $(patsubst %/Cargo.toml,%,$(shell grep -l '^meshward-[a-z0-9-]* = { path = "\.\./' filters/*/Cargo.toml))
BUNDLE_PACKAGES := $(foreach d,$(BUNDLE_DIRS),$(call package_of,$(d)))

# Every filter, and the fixture that panics on purpose, also builds as an Envoy dynamic
# module for x86_64 Linux: out/<name>.so (out/fixture-panic.so), with meshward-shared's
# `native` backend and the `native` profile (release, panics unwind so hooks catch them).
NATIVE_TARGET := x86_64-unknown-linux-gnu
NATIVE_DIRS := $(patsubst %/Cargo.toml,%,$(sort $(wildcard filters/*/Cargo.toml))) harness/fixtures/panic
NATIVE_PACKAGES := $(foreach d,$(NATIVE_DIRS),$(call package_of,$(d)))
NATIVE_BUILD = $(CARGO) build --profile native --target $(NATIVE_TARGET) --features meshward-shared/native

.PHONY: help setup build lint fmt test check-k8s k8s-tools run bench fuzz soak clean images push new-filter

help:
	@echo "make run    build the filters and start Envoy + an echo upstream on 127.0.0.1:10000"
	@echo "make run CONFIG=envoy-config/<name>.yaml  the same with another config (one filter's example)"
	@echo "make test   install what is missing, build, lint, and run every test"
	@echo "make setup  install the Wasm target, Envoy $(ENVOY_VERSION) in .venv, and curl"
	@echo "make build  build every filter and fixture to out/*.wasm, and every filter to out/*.so (native)"
	@echo "make lint   rustfmt and clippy, for the host and for $(WASM_TARGET)"
	@echo "make fmt    rustfmt every crate in place"
	@echo "make check-k8s  check what k8s/ renders: Istio's schema, and every pluginConfig in the harness and Envoy"
	@echo "make bench  run the benchmarks (scripts/bench.sh)"
	@echo "make fuzz   run every fuzz property long (FUZZ_CASES=$(FUZZ_CASES) cases; make test runs a few)"
	@echo "make soak   a hostile soak of the make-run stack in Envoy (SOAK_SECS=$(SOAK_SECS) s; make test runs 20 s)"
	@echo "make clean  remove out/ and Cargo's target/ (.venv stays)"
	@echo "make images package each filter as an OCI image in out/images/<name>/ (Istio's compat layout)"
	@echo "make push REGISTRY=127.0.0.1:5000/meshward [TAG=x]  push every image; prints the digests to pin"
	@echo "make new-filter NAME=my-filter  a new filter from templates/filter/ (docs/writing-a-filter.md)"

setup:
	scripts/setup.sh

build:
	$(CARGO) build --release --target $(WASM_TARGET) $(addprefix -p ,$(filter-out $(BUNDLE_PACKAGES),$(WASM_PACKAGES)))
	@$(foreach p,$(BUNDLE_PACKAGES),$(CARGO) build --release --target $(WASM_TARGET) -p $(p) &&) true
	@mkdir -p out
	@$(foreach d,$(WASM_DIRS),\
	  cp $(TARGET_DIR)/$(WASM_TARGET)/release/$(subst -,_,$(call package_of,$(d))).wasm \
	     out/$(call out_name_of,$(d)).wasm && \
	  echo "out/$(call out_name_of,$(d)).wasm" &&) true
	$(NATIVE_BUILD) $(addprefix -p ,$(filter-out $(BUNDLE_PACKAGES),$(NATIVE_PACKAGES)))
	@$(foreach p,$(filter $(BUNDLE_PACKAGES),$(NATIVE_PACKAGES)),$(NATIVE_BUILD) -p $(p) &&) true
	@$(foreach d,$(NATIVE_DIRS),\
	  cp $(TARGET_DIR)/$(NATIVE_TARGET)/native/lib$(subst -,_,$(call package_of,$(d))).so \
	     out/$(call out_name_of,$(d)).so && \
	  echo "out/$(call out_name_of,$(d)).so" &&) true

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --target $(WASM_TARGET) -p meshward-shared $(addprefix -p ,$(WASM_PACKAGES)) -- -D warnings
	$(CARGO) clippy --features meshward-shared/native -p meshward-shared $(addprefix -p ,$(filter-out $(BUNDLE_PACKAGES),$(NATIVE_PACKAGES))) -- -D warnings

fmt:
	$(CARGO) fmt --all

test: setup build lint k8s-tools
	scripts/build-rls.sh >/dev/null
	$(CARGO) test --workspace
	scripts/test-new-filter.sh

# The checks of k8s/ alone (tests/tests/wasmplugins.rs); `make test` runs them with the rest.
check-k8s: setup build k8s-tools
	$(CARGO) test -p meshward-tests --test wasmplugins

# One clear failure, before any test runs, when what the checks of k8s/ need is missing.
k8s-tools:
	@command -v kubectl >/dev/null || { echo "kubectl is missing: the checks of k8s/ render with it (1.27 or later)" >&2; exit 1; }
	@test -d k8s/check/node_modules/@kubernetes-models/istio || { echo "k8s/check/node_modules is missing: run make setup (it runs npm ci in k8s/check)" >&2; exit 1; }

run: setup build
	scripts/run.sh $(CONFIG)

bench: setup build
	scripts/bench.sh

# The fuzz properties (each crate's src/fuzz.rs, harness/tests/fuzz.rs, tests/tests/fuzz_filters.rs)
# that `make test` runs for a few cases each, run for many: MESHWARD_FUZZ_CASES is the count of
# the cheapest properties; costlier ones divide it by their weight (meshward_shared::fuzzing).
FUZZ_CASES ?= 10000
fuzz: setup build
	MESHWARD_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test --workspace --lib fuzz
	MESHWARD_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test -p meshward-harness --test fuzz
	MESHWARD_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test -p meshward-tests --test fuzz_filters
	MESHWARD_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test -p meshward-jwt-auth --test rsa_verification gives_the_rsa_crates_verdict

# The hostile soak of tests/tests/envoy_soak.rs (20 s in `make test`), for SOAK_SECS seconds;
# it prints the statuses it saw, the Wasm VM counts and Envoy's memory growth.
SOAK_SECS ?= 300
soak: setup build
	MESHWARD_SOAK_SECS=$(SOAK_SECS) $(CARGO) test -p meshward-tests --test envoy_soak -- --nocapture

# OCI images for Istio's WasmPlugin, made by tools/meshward-image (see its README): one per
# filter, out/images/<name>/, and pushed as $(REGISTRY)/<name>:$(TAG).
FILTER_NAMES := $(notdir $(patsubst %/Cargo.toml,%,$(wildcard filters/*/Cargo.toml)))
IMAGE_TOOL := $(TARGET_DIR)/debug/meshward-image
TAG ?= $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)

images: build
	$(CARGO) build -p meshward-image
	@$(foreach n,$(FILTER_NAMES),$(IMAGE_TOOL) build out/$(n).wasm out/images/$(n) &&) true

push: images
	@test -n "$(REGISTRY)" || { echo "make push: set REGISTRY, for example REGISTRY=127.0.0.1:5000/meshward" >&2; exit 2; }
	@$(foreach n,$(FILTER_NAMES),$(IMAGE_TOOL) push out/images/$(n) $(REGISTRY)/$(n):$(TAG) &&) true
new-filter:
	scripts/new-filter.sh "$(NAME)"

clean:
	rm -rf out bench-results
	$(CARGO) clean
