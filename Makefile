# Two commands for a newcomer: `make dev` runs the API locally, `make test` runs every test.
SHELL := /bin/bash
# Local runs set their own region and dummy credentials (scripts/dev.sh, the tests); real
# credentials are only ever read by `make deploy-staging`, from your environment.
export CARGO_TERM_COLOR ?= never
export SAM_CLI_TELEMETRY = 0
VENV := .local/venv/bin
FUNCTIONS := $(notdir $(wildcard functions/*))
# Everything but the functions, which have no tests and are built on their own (below): the
# same packages in every step resolve the same features, so nothing is compiled twice.
NOT_FUNCTIONS := --workspace $(addprefix --exclude ,$(FUNCTIONS))

.PHONY: help deps dev test verify unit integration robustness lint fmt bench build validate smoke api-docs deploy-staging

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

deps: ## Install what is missing: Java, DynamoDB Local, cargo-lambda, cfn-lint, aws-sam-cli, schemathesis (into .local/)
	@scripts/deps.sh

dev: ## Run the API locally: DynamoDB Local + table + demo org and key + cargo lambda watch
	@scripts/dev.sh

test: deps lint ## Everything CI runs: lint, bench smoke, the API reference page in a browser, unit, integration, robustness (schemathesis + load); ends with a summary
	@echo "==> [$$(date +%T)] build"
	@# The functions only as `cargo lambda watch` builds them (their own features, not the
	@# workspace's), so no function compiles inside a test request and none links twice.
	cargo build $(NOT_FUNCTIONS) --all-targets
	cargo build $(addprefix -p ,$(FUNCTIONS))
	@echo "==> [$$(date +%T)] bench smoke"
	@# The benchmarks as a smoke test (a few rounds, debug builds): a broken bench fails CI.
	BENCH_SMOKE=1 cargo test $(NOT_FUNCTIONS) --bench init --bench patch --bench list --bench events --bench contention --bench groups --bench ratelimit
	@echo "==> [$$(date +%T)] API reference page, in headless Chromium"
	@$(MAKE) --no-print-directory api-docs
	node scripts/check_api_docs.mjs target/api-docs/index.html target/api-docs/operations.json
	@echo "==> [$$(date +%T)] tests"
	@cargo test $(NOT_FUNCTIONS) --no-fail-fast 2>&1 | tee target/test-output.log; \
	  status=$${PIPESTATUS[0]}; scripts/summary.sh target/test-output.log; exit $$status

verify: test ## Another name for `make test`: the full run, ending with the robustness summary table

unit: ## Unit tests only (no local stack)
	cargo test $(NOT_FUNCTIONS) --lib --bins

integration: deps ## Integration tests only (DynamoDB Local + cargo lambda watch)
	cargo build -p membersctl
	cargo build $(addprefix -p ,$(FUNCTIONS))
	cargo test -p members-tests --test integration

robustness: deps ## Only the robustness run: schemathesis + bounded load (VERIFY_FUZZ_EXAMPLES, VERIFY_LOAD_REQUESTS)
	cargo build -p membersctl
	cargo build $(addprefix -p ,$(FUNCTIONS))
	cargo test -p members-tests --test verify

lint: deps validate ## rustfmt, clippy (warnings are errors), and the SAM template checks
	@echo "==> [$$(date +%T)] lint"
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings

validate: deps ## cfn-lint, `sam validate --lint`, the routes SAM creates, each role's IAM vs its code (offline)
	$(VENV)/cfn-lint template.yaml
	AWS_DEFAULT_REGION=eu-west-1 $(VENV)/sam validate --lint --template template.yaml
	AWS_DEFAULT_REGION=eu-west-1 $(VENV)/python scripts/check_routes.py
	@# Least privilege: each function's DynamoDB actions as derived from its Rust code, writes
	@# only to ORG# items; then proof that the check refuses broken templates.
	AWS_DEFAULT_REGION=eu-west-1 $(VENV)/python scripts/check_iam.py
	AWS_DEFAULT_REGION=eu-west-1 $(VENV)/python scripts/check_iam.py --self-test

fmt: ## Format the code
	cargo fmt --all

bench: deps ## Benchmarks against DynamoDB Local (optimised build; prints figures and ratios)
	cargo bench -p members-tests --bench patch
	cargo bench -p members-tests --bench list
	cargo bench -p members-tests --bench init
	cargo build --profile bench -p membersctl
	MEMBERSCTL=$(CURDIR)/target/release/membersctl cargo bench -p members-tests --bench events
	cargo bench -p members-tests --bench contention
	cargo bench -p members-tests --bench groups
	cargo bench -p members-tests --bench ratelimit

build: deps ## Release build of every function for Lambda (arm64), with a size table
	@start=$$(date +%s); \
	PATH="$(CURDIR)/$(VENV):$$PATH" cargo lambda build --release --arm64 $(addprefix --bin ,$(FUNCTIONS)) || exit 1; \
	end=$$(date +%s); \
	printf '\n%-22s %10s %10s\n' function bytes gzipped; \
	for f in $(FUNCTIONS); do \
	  b=target/lambda/$$f/bootstrap; \
	  printf '%-22s %10s %10s\n' $$f $$(stat -c %s $$b) $$(gzip -9c $$b | wc -c); \
	done; \
	echo "release build: $$((end - start)) s"

api-docs: deps ## The API reference page from openapi.yaml (Scalar): target/api-docs/index.html, opens from disk
	@$(VENV)/python scripts/api_docs.py target/api-docs

smoke: ## The README tour against a deployment: make smoke URL=… KEY=… [SCIM_KEY=…] [HOOKS_KEY=…]
	@if [ -z "$(URL)" ] || [ -z "$(KEY)" ]; then \
	  echo "usage: make smoke URL=<the API's base URL> KEY=<a key with r_members,w_members> [SCIM_KEY=…] [HOOKS_KEY=…]" >&2; exit 2; fi
	@python3 scripts/smoke.py --url "$(URL)" --key "$(KEY)" --scim-key "$(SCIM_KEY)" --hooks-key "$(HOOKS_KEY)"

deploy-staging: deps ## sam build + sam deploy --config-env staging, then the smoke test against it (needs AWS credentials and KEY=…)
	@if [ -z "$$AWS_ACCESS_KEY_ID$$AWS_PROFILE$$AWS_WEB_IDENTITY_TOKEN_FILE" ] && [ ! -f "$$HOME/.aws/credentials" ] && [ ! -f "$$HOME/.aws/config" ]; then \
	  echo "No AWS credentials found: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) for the account to deploy to." >&2; exit 1; fi
	@if [ "$$AWS_ACCESS_KEY_ID" = "local" ]; then \
	  echo "AWS_ACCESS_KEY_ID is the local dummy 'local'; unset it or use your real credentials." >&2; exit 1; fi
	@# Checked before deploying: no deployment goes out without its smoke test.
	@if [ -z "$(KEY)" ]; then \
	  echo "KEY is not set: give a staging API key with r_members,w_members (docs/operations.md, \"Smoke test\"): make deploy-staging KEY=mapi_… [SCIM_KEY=…] [HOOKS_KEY=…]" >&2; exit 1; fi
	PATH="$(CURDIR)/$(VENV):$$PATH" $(VENV)/sam build
	$(VENV)/sam deploy --config-env staging
	@url=$$($(VENV)/sam list stack-outputs --config-env staging --output json | python3 -c 'import json,sys; print(next(o["OutputValue"] for o in json.load(sys.stdin) if o["OutputKey"] == "ApiUrl"))') && \
	  echo "==> smoke test of $$url" && \
	  python3 scripts/smoke.py --url "$$url" --key "$(KEY)" --scim-key "$(SCIM_KEY)" --hooks-key "$(HOOKS_KEY)"
