# Developer entry points. `make run` and `make test` work from a fresh clone:
# they create .venv, build the Rust core into it, and install the Python deps.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
export VIRTUAL_ENV := $(abspath $(VENV))
# The PyO3 build script and clippy's check of the bindings use this interpreter.
export PYO3_PYTHON := $(abspath $(BIN)/python)

RUST_SOURCES := $(shell find core-rs/src -name '*.rs') Cargo.toml core-rs/Cargo.toml
STAMP := $(VENV)/.reelwatch-built

.PHONY: all build run test lint lint-python lint-rust test-rust test-python bench \
	coverage install install-user uninstall check-units clean

all: build

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip 'maturin>=1.7,<2'

# maturin builds the extension in release mode into daemon/reelwatch/ and
# installs the package in editable mode with its runtime and dev dependencies.
$(STAMP): $(BIN)/python pyproject.toml $(RUST_SOURCES)
	$(BIN)/maturin develop --release --extras dev -q
	touch $@

build: $(STAMP)

run: build
	mkdir -p library .state
	$(BIN)/reelwatch serve --config config/reelwatch.toml

lint-python: build
	$(BIN)/ruff check daemon tests benchmarks
	$(BIN)/ruff format --check daemon tests benchmarks
	$(BIN)/mypy

lint-rust: $(BIN)/python
	cargo fmt --all --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python -- -D warnings

lint: lint-python lint-rust

test-rust:
	cargo test

test-python: build
	$(BIN)/pytest

test: lint test-rust test-python check-units

# Line coverage of the pure-Rust library (`cargo test`, no python feature).
# tarpaulin's llvm engine reads the profiles of rustc's own instrumentation,
# so it needs no llvm-tools; see docs/coverage.md.
TARPAULIN_VERSION := 0.37.5
COVERAGE_MIN ?= 90

coverage:
	command -v cargo-tarpaulin >/dev/null || \
		cargo install --locked cargo-tarpaulin --version $(TARPAULIN_VERSION)
	cargo tarpaulin --engine llvm --skip-clean --target-dir target/tarpaulin \
		--exclude-files 'core-rs/fuzz/*' --out Stdout --fail-under $(COVERAGE_MIN)

bench: build
	$(BIN)/python benchmarks/run.py

# Installs the package system-wide and the units; see docs/operations.md.
install:
	systemd/install.sh

install-user:
	systemd/install.sh --user

uninstall:
	systemd/install.sh --uninstall

check-units:
	systemd/check-units.sh

clean:
	cargo clean
	rm -rf $(VENV) .state daemon/reelwatch/_core*.so
