# Two commands for a newcomer (README): `make run` and `make test`. Both create .venv and
# install requirements.txt on first use (and again whenever it changes).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

# `make run` and `make test` are development commands: DEBUG unless the environment says not.
export DEBUG ?= true
# `make run` starts the simulated demo fleet too; DEMO_FLEET=false make run leaves it out.
DEMO_FLEET ?= true
# Reports every 10 s keep the demo lively; real agents default to 30 s.
export AGENT_REPORT_INTERVAL_S ?= 10
# The demo settles 5-minute epochs after a minute's grace, so rewards show up quickly.
export REWARD_EPOCH_S ?= 300
export REWARD_GRACE_S ?= 60
# Demo-sized proof-of-GPU challenges: the simulated GPUs solve them with NumPy in milliseconds,
# and re-verification comes every 10 minutes on average so it shows.
export GPU_VERIFICATION_N ?= 128
export GPU_VERIFICATION_MAX_ROUNDS ?= 2
export GPU_VERIFICATION_INTERVAL_S ?= 600
# `make run` also starts a local chain (`manage.py devchain`: py-evm behind JSON-RPC on
# 127.0.0.1:$(DEVCHAIN_PORT)) with the distributor deployed, and points web, worker and beat at it
# (`devchain --print-env`); DEVCHAIN=false leaves it out and keeps the chain settings of the
# environment. It runs only with DEBUG (its keys are public).
DEVCHAIN ?= $(DEBUG)
DEVCHAIN_PORT ?= 8545
# The demo chain mines a block every 2 s: the watcher looks every 5 s.
export CLAIM_WATCH_EVERY_S ?= 5
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test venv lint clean

$(BIN)/.installed: requirements.txt $(wildcard agent/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	if [ -f agent/pyproject.toml ]; then $(BIN)/python -m pip install --quiet -e agent; fi
	# Tests run the agent's PyTorch backend on the CPU: the CPU build (+cpu), never CUDA wheels.
	$(BIN)/python -m pip install --quiet "torch==2.13.0+cpu" --extra-index-url https://download.pytorch.org/whl/cpu
	touch $@

venv: $(BIN)/.installed

run: venv
	$(BIN)/python manage.py migrate --noinput
	STATIC_MANIFEST=true $(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py build_agent
	@echo
	@echo "  OmniTensor portal: http://$(HOST):$(PORT)/   (admin: http://$(HOST):$(PORT)/admin/)"
	@echo
	$(if $(filter true,$(DEVCHAIN)),@echo "  Local chain: http://127.0.0.1:$(DEVCHAIN_PORT)/   (chain id 31337)"; echo)
	$(if $(filter true,$(DEVCHAIN)),chain_env="$$($(BIN)/python manage.py devchain --print-env --port $(DEVCHAIN_PORT))" && eval "$$chain_env" &&) \
	HOST=$(HOST) DEMO_FLEET=$(DEMO_FLEET) DEMO_PORTAL_URL=http://$(HOST):$(PORT) STATIC_MANIFEST=true \
		DEVCHAIN_PORT=$(DEVCHAIN_PORT) $(BIN)/honcho start --port $(PORT) --procfile Procfile \
		web worker beat $(if $(filter true,$(DEMO_FLEET)),fleet) $(if $(filter true,$(DEVCHAIN)),chain)

# Tests keep their broker folder and cache apart from a running `make run`.
test: venv
	DEMO_FLEET=false AGENT_REPORT_INTERVAL_S=30 REWARD_EPOCH_S=3600 REWARD_GRACE_S=900 \
		CELERY_BROKER_DIR=$(CURDIR)/var/test-broker \
		CACHE_URL=$${CACHE_URL:-filecache://$(CURDIR)/var/test-cache} $(BIN)/pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf var staticfiles
