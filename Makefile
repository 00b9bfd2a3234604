PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test test-unit test-container lint demo dev-kafka clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: venv
	$(BIN)/python -m pytest -q --durations=25 tests

# The tests marked `long` (a minute or more each), which `make test` leaves out; CI runs both.
.PHONY: test-long
test-long: venv
	KSTATEFUN_LONG_TESTS=1 $(BIN)/python -m pytest -q -m long tests

# Only the 3-node failover tests, the long ones included. About 5 minutes.
.PHONY: test-failover
test-failover: venv
	KSTATEFUN_LONG_TESTS=1 $(BIN)/python -m pytest -q tests/e2e/test_broker_failover.py

test-unit: venv
	$(BIN)/python -m pytest -q tests/unit

# The unit tests against the compiled build (docs/performance.md, "The compiled build"): this
# tree installed with KSTATEFUN_COMPILE=1 (not editable) into a venv of its own,
# .venv-compiled; `make test` and `make test-unit` test the pure Python install. Needs a C
# compiler and the Python headers; pip fetches mypyc for the build.
COMPILED_VENV := .venv-compiled
CBIN := $(COMPILED_VENV)/bin

.PHONY: test-compiled
test-compiled:
	test -x $(CBIN)/python || $(PYTHON) -m venv $(COMPILED_VENV)
	$(CBIN)/pip install --quiet --upgrade pip
	$(CBIN)/pip install --quiet '.[dev]'
	KSTATEFUN_COMPILE=1 $(CBIN)/pip install --quiet --force-reinstall --no-deps .
	KSTATEFUN_TEST_BUILD=compiled $(CBIN)/python -m pytest -q tests/unit

# The Dockerfile and docker-compose.yml for real (tests/container, not part of `make test`):
# needs a Docker engine with the compose plugin, or podman with podman-compose; installs
# nothing (CI sets podman up with .ci/container-setup). A few minutes with warm build caches.
test-container: venv
	$(BIN)/python -m pytest -q --timeout 900 tests/container

lint: venv
	$(BIN)/ruff check service tests examples hatch_build.py
	$(BIN)/ruff format --check service tests examples hatch_build.py
	$(BIN)/mypy

demo: venv
	$(BIN)/python -m examples.demo

dev-kafka: venv
	$(BIN)/kstatefun dev-kafka

# Chaos run (tests/chaos/run.py, docs/guarantees.md): three workers, a broker of its own, the
# StateFun SDK; random faults for CHAOS_MINUTES of input, then a read_committed verification.
# Bounded: ends by itself (well under 20 minutes with the default 10). CHAOS_SEED repeats a run.
# CHAOS_BROKERS=3 runs a replicated 3-node cluster and adds broker, coordinator, controller and
# rolling-restart faults. CHAOS_STATE_STORE=rocksdb runs the workers on the disk-backed store,
# CHAOS_STATE_STORE=snapshot on the memory store with a local snapshot (a restart loads it),
# and CHAOS_STANDBY_REPLICAS=1 with it gives every worker a copy of every other's partitions.
CHAOS_MINUTES ?= 10
CHAOS_SEED ?=
CHAOS_BROKERS ?= 1
CHAOS_STATE_STORE ?= memory
CHAOS_STANDBY_REPLICAS ?= 0
# empty: the workers' default rebalance_protocol (consumer); eager or cooperative to compare
CHAOS_REBALANCE_PROTOCOL ?=

.PHONY: chaos chaos-soak
chaos: venv
	$(BIN)/python -m tests.chaos.run --minutes $(CHAOS_MINUTES) --brokers $(CHAOS_BROKERS) --state-store $(CHAOS_STATE_STORE) --standby-replicas $(CHAOS_STANDBY_REPLICAS) $(if $(CHAOS_REBALANCE_PROTOCOL),--rebalance-protocol $(CHAOS_REBALANCE_PROTOCOL)) $(if $(CHAOS_SEED),--seed $(CHAOS_SEED))

# A soak: CHAOS_RUNS short runs (CHAOS_SOAK_MINUTES each), each with its own seed, stopping at
# the first failure (its seed and kept work directory are printed). About 4 minutes a run.
CHAOS_RUNS ?= 5
CHAOS_SOAK_MINUTES ?= 2
chaos-soak: venv
	$(BIN)/python -m tests.chaos.run --runs $(CHAOS_RUNS) --minutes $(CHAOS_SOAK_MINUTES) --state-store $(CHAOS_STATE_STORE) --standby-replicas $(CHAOS_STANDBY_REPLICAS) $(if $(CHAOS_SEED),--seed $(CHAOS_SEED))

# Fuzzing (tests/fuzz, docs/guarantees.md "Fuzzing"): the hypothesis `long` profile, random
# examples, many more of them than `make test` runs. Bounded: ends by itself in a few minutes.
.PHONY: fuzz
fuzz: venv
	HYPOTHESIS_PROFILE=long timeout 900 $(BIN)/python -m pytest -q tests/fuzz

# Benchmarks (bench/, docs/performance.md); not part of `make test`.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

.PHONY: bench bench-quick

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m bench.run --quick

clean:
	rm -rf $(VENV) $(COMPILED_VENV) .pytest_cache

# Regenerates the request-reply protocol code from its .proto with a pinned protoc (from
# grpcio-tools, in a tool venv cached outside the repo). The generated code checks at import
# that the protobuf runtime is at least its own version: keep pyproject's protobuf bound in step.
PROTO_TOOLS ?= $(HOME)/.cache/kstatefun/proto-tools-grpcio-1.81.1
PROTO_DIR := service/kstatefun/remote/proto

.PHONY: proto
proto:
	test -x $(PROTO_TOOLS)/bin/python || $(PYTHON) -m venv $(PROTO_TOOLS)
	$(PROTO_TOOLS)/bin/pip install --quiet 'grpcio-tools==1.81.1'
	$(PROTO_TOOLS)/bin/python -m grpc_tools.protoc -Iservice --python_out=service \
		--pyi_out=service $(PROTO_DIR)/request_reply.proto
