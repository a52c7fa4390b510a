# Lotería Nacional: local build/test targets and the Docker demo.
# `make` (or `make help`) lists the targets.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Number of clients (agencies) of the Docker demo. docker-compose-dev.yaml is
# the generator's output for N=5; any other N uses docker-compose-<N>.yaml,
# written by `make compose N=<N>` (docker-compose-up writes it when needed).
N ?= 5
# SERVERS=K: K servers over one PostgreSQL service instead of one server with
# its bets.csv (docker-compose-<N>-<K>servers.yaml; see docs/DOCKER.md).
SERVERS ?=
# HA=1 (with SERVERS=K): the database is two PostgreSQL nodes kept by
# pg_auto_failover and its monitor instead of one
# (docker-compose-<N>-<K>servers-ha.yaml; see docs/DOCKER.md).
HA ?=
ifneq ($(HA),)
ifeq ($(SERVERS),)
$(error HA=1 needs SERVERS=K: the highly available database is shared by several servers)
endif
endif
COMPOSE_FILE ?= $(if $(SERVERS),docker-compose-$(N)-$(SERVERS)servers$(if $(HA),-ha).yaml,$(if $(filter 5,$(N)),docker-compose-dev.yaml,docker-compose-$(N).yaml))
SERVERS_ARG := $(if $(SERVERS),--servers $(SERVERS)$(if $(HA), --ha))
# Seconds `docker compose stop` waits after SIGTERM before SIGKILL.
GRACE ?= 3
# KEEP_DATA=1: docker-compose-down keeps the server's volume (bets.csv).
KEEP_DATA ?=

SERVER_IMAGE := lottery-server:latest
CLIENT_IMAGE := lottery-client:latest
GEN_DATA_IMAGE := lottery-gen-data:latest
POSTGRES_IMAGE := lottery-postgres:latest
PGAF_IMAGE := lottery-pgaf:latest
COMPOSE := docker compose -f $(COMPOSE_FILE) --profile netcat

.PHONY: help build test test-postgres test-ha run bench data fmt lint docker-image docker-data compose \
	docker-compose-up docker-compose-down docker-compose-logs \
	docker-compose-netcat-up docker-compose-netcat-logs docker-compose-netcat-down \
	echo-test docker-e2e docker-clean docker-keys docker-ha-state docker-ha-failover docker-ha-rejoin

help: ## List the targets
	@echo "usage: make <target> [N=<clients>] [SERVERS=<servers> [HA=1]] [GRACE=<seconds>] [KEEP_DATA=1]"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-28s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# ---- local (Rust toolchain) -------------------------------------------------

build: ## cargo build --release (server, client)
	cargo build --release

test: ## Unit, wire-level, fault-injection and end-to-end tests (cargo, release build)
	cargo test --release --lib --bins --tests

test-postgres: ## The PostgreSQL backend's tests (--features postgres; needs Debian's postgresql package)
	cargo test --release --features postgres --lib --test postgres --test postgres_schema --test postgres_commit

test-ha: ## Failovers of a pg_auto_failover cluster under the servers (needs postgresql-15-auto-failover)
	cargo test --release --features postgres --test ha -- --nocapture

run: ## Local demo without Docker (scripts/run-local.sh)
	scripts/run-local.sh

bench: ## Throughput benchmark (scripts/bench.sh)
	scripts/bench.sh

data: ## Generate missing .data/agency-{1..5}.csv locally (never overwrites)
	@if [ -f .data/dataset.zip ] && command -v unzip >/dev/null; then \
		unzip -n -j -q .data/dataset.zip '*agency-*.csv' -d .data || true; fi
	cargo run --release --example gen-data -- --out .data --agencies 5 --keep-existing

fmt: ## cargo fmt --all
	cargo fmt --all

lint: ## cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets -- -D warnings

# ---- Docker -------------------------------------------------------------------

docker-image: ## Build the lottery-server, lottery-client and lottery-gen-data images (and lottery-postgres with SERVERS=K, lottery-pgaf with HA=1)
	docker build --force-rm -f Dockerfile.server -t $(SERVER_IMAGE) .
	docker build --force-rm -f Dockerfile.client -t $(CLIENT_IMAGE) .
	docker build --force-rm -f Dockerfile.client --target gen-data -t $(GEN_DATA_IMAGE) .
	$(if $(SERVERS),$(if $(HA),docker build --force-rm -f Dockerfile.pgaf -t $(PGAF_IMAGE) scripts,docker build --force-rm -f Dockerfile.postgres -t $(POSTGRES_IMAGE) .))

compose: ## Write the compose file for N clients: make compose N=10 [SERVERS=3 [HA=1]]
	scripts/generar-compose.sh $(COMPOSE_FILE) $(N) $(SERVERS_ARG)

docker-data: docker-image ## Unzip/generate missing .data/agency-N.csv (no Rust needed)
	scripts/docker-data.sh $(N)

docker-keys: docker-image ## Create .data/secret once; write each agency's key to .data/keys/agency-N.env
	scripts/docker-keys.sh $(N)

# docker-compose-dev.yaml is used as it is (a student may have edited it);
# docker-compose-<N>.yaml is (re)generated. The data and the keys cover every
# CLI_ID in it; the server's secret is created on first use.
docker-compose-up: docker-image ## Build the images, prepare the data, start server + N clients
	@if [ "$(COMPOSE_FILE)" != docker-compose-dev.yaml ] || [ ! -f "$(COMPOSE_FILE)" ]; then \
		scripts/generar-compose.sh "$(COMPOSE_FILE)" $(N) $(SERVERS_ARG); fi
	@agencies=$$(grep -Eo 'CLI_ID=[0-9]+' "$(COMPOSE_FILE)" | cut -d= -f2 | sort -n | tail -n 1); \
		echo "scripts/docker-data.sh $${agencies:-0}"; scripts/docker-data.sh "$${agencies:-0}" && \
		{ echo "scripts/docker-keys.sh $${agencies:-0}"; scripts/docker-keys.sh "$${agencies:-0}"; }
	docker compose -f $(COMPOSE_FILE) up -d
	@echo "started; follow with: make docker-compose-logs$(if $(filter 5,$(N)),, N=$(N))$(if $(SERVERS), SERVERS=$(SERVERS))$(if $(HA), HA=1)"

docker-compose-down: ## Stop (SIGTERM, GRACE s), then remove containers, network and volume
	$(COMPOSE) stop -t $(GRACE)
	$(COMPOSE) down -t $(GRACE) --remove-orphans $(if $(KEEP_DATA),,--volumes)

docker-compose-logs: ## Follow the logs of the demo
	docker compose -f $(COMPOSE_FILE) logs -f

docker-compose-netcat-up: ## Run the echo smoke test container (netcat profile)
	$(COMPOSE) up -d --no-deps netcat

docker-compose-netcat-logs: ## Show the echo smoke test result
	$(COMPOSE) logs -f netcat

docker-compose-netcat-down: ## Remove the echo smoke test container
	$(COMPOSE) rm -f -s netcat

docker-ha-state: ## HA=1 demo: the monitor's view of the nodes (pg_autoctl show state)
	scripts/docker-ha.sh state

docker-ha-failover: ## HA=1 demo: docker kill the primary's container, time until the standby takes over
	scripts/docker-ha.sh failover

docker-ha-rejoin: ## HA=1 demo: docker start the killed node, time until it is the standby again
	scripts/docker-ha.sh rejoin

echo-test: ## Echo smoke test against the running server (scripts/validar-echo-server.sh)
	COMPOSE_FILE=$(COMPOSE_FILE) scripts/validar-echo-server.sh

docker-e2e: ## Docker end-to-end test (scripts/docker-e2e.sh)
	scripts/docker-e2e.sh

docker-clean: ## Remove the lottery images and their build cache (keeps base images)
	-docker rmi $(SERVER_IMAGE) $(CLIENT_IMAGE) $(GEN_DATA_IMAGE)
	-docker image prune -f --filter label=lottery.stage=builder
