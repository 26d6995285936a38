# Developer entry points. Logic lives in deploy/local/*.sh; `make help` lists targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
# rustup installs cargo here; make it visible to every recipe.
export PATH := $(HOME)/.cargo/bin:$(PATH)
.PHONY: help up down status build run test bench lint fmt clean-data

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

up: ## install what is missing, start the broker (tansu) and ClickHouse, wait until healthy
	@bash deploy/local/up.sh

down: ## stop skein, the broker and ClickHouse (data/ is kept)
	@bash deploy/local/down.sh

status: ## show what runs, pids, ports and the ClickHouse version
	@bash deploy/local/status.sh

build: ## build the release binary target/release/skein
	cargo build --release --locked -p skein

run: up build ## start skein all-in-one against the local stack, in the background
	@bash deploy/local/run-skein.sh

test: up ## run unit and end-to-end tests (needs the stack, started by up)
	cargo build --locked -p skein   # tests/ingester_processes.rs runs the binary
	cargo test --workspace --locked

bench: up ## pipeline and query benchmarks on the local stack: prints tables, writes bench/results/bench.json (BENCH_ARGS=...)
	cargo build --release --locked -p skein -p skein-bench
	target/release/skein-bench all $(BENCH_ARGS)

lint: ## cargo fmt --check and clippy with warnings denied
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

fmt: ## format the code
	cargo fmt --all

clean-data: down ## stop everything and delete data/
	rm -rf data/
