# Two commands for a newcomer: `make dev` runs the API locally, `make test` runs every test.
SHELL := /bin/bash
export AWS_REGION ?= us-east-1
export AWS_DEFAULT_REGION ?= us-east-1
export AWS_ACCESS_KEY_ID ?= local
export AWS_SECRET_ACCESS_KEY ?= local
export CARGO_TERM_COLOR ?= never
FUNCTIONS := $(notdir $(wildcard functions/*))

.PHONY: help deps dev test unit integration lint fmt bench

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

deps: ## Install Java, DynamoDB Local, cargo-lambda (into .local/) if missing
	@scripts/deps.sh

dev: ## Run the API locally: DynamoDB Local + table + demo org and key + cargo lambda watch
	@scripts/dev.sh

test: deps lint ## Everything CI runs: lint, unit tests, integration tests
	cargo build --workspace --all-targets
	@# The functions as `cargo lambda watch` builds them (their own features, not the
	@# workspace's), so no function compiles inside a test request.
	cargo build $(addprefix -p ,$(FUNCTIONS))
	cargo test --workspace --no-fail-fast

unit: ## Unit tests only (no local stack)
	cargo test --workspace --lib --bins

integration: deps ## Integration tests only (DynamoDB Local + cargo lambda watch)
	cargo build $(addprefix -p ,$(FUNCTIONS))
	cargo test -p members-tests --test integration

lint: deps ## rustfmt, clippy (warnings are errors) and cfn-lint on template.yaml
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings
	.local/venv/bin/cfn-lint template.yaml

fmt: ## Format the code
	cargo fmt --all

bench: deps ## Benchmarks against DynamoDB Local (optimised build; prints figures and ratios)
	cargo bench -p members-tests --bench patch
	cargo bench -p members-tests --bench list
