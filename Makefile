# One entry point for setting up and checking the project on a fresh machine.
PYTHON ?= python3
VENV := .venv
PINS_VENV := .venv-pins
PINS := constraints/openwebui-0.12.txt

.PHONY: demo demo-collector test test-latest test-pins test-fast lint bench bench-view redis chromium web collector clean

## Set up the environment, make sure Redis runs, and run the whole platform once (the main job).
## DEMO_ARGS go to `python -m bot.demo` (its --help lists them), e.g. make demo DEMO_ARGS=--view.
demo: redis $(VENV)/.installed
	$(VENV)/bin/python -m bot.demo $(DEMO_ARGS)

## The same through a real OpenTelemetry Collector (make collector: needs Go): every service exports to it over
## OTLP and the report reads its files (logs.json, traces.json, metrics.json).
demo-collector: redis $(VENV)/.installed
	$(VENV)/bin/python -m bot.demo --collector $(DEMO_ARGS)

## Set up both environments, make sure Redis runs, and run the suite twice:
## on the newest releases, and on Open WebUI 0.12's pins.
## Two workers: the bot tests start real processes, and this uses both cores.
## The pins are the manifold's host's: the tests marked `latest_only` (the bot services, the demo, which
## runs them, and the CLI's debug subprocess tests) run on the newest releases only.
## Markers say what a test needs (pyproject.toml, tests/conftest.py): redis, processes, bot, manifold.
## The browser tests (tests/browser/) also need Debian's Chromium and the page's bundle.
PYTEST := -m pytest -q -n 2 --dist load
test: redis chromium web collector
	$(MAKE) -j2 $(VENV)/.installed $(PINS_VENV)/.installed
	$(MAKE) test-latest test-pins

test-latest: $(VENV)/.installed
	$(VENV)/bin/python $(PYTEST)

test-pins: $(PINS_VENV)/.installed
	$(PINS_VENV)/bin/python $(PYTEST) -m 'not latest_only'

## The tests that need neither Redis nor a process of ours: seconds, on the newest releases.
test-fast: $(VENV)/.installed
	$(VENV)/bin/python $(PYTEST) -m 'not redis and not processes'

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy src bot manifold
	$(VENV)/bin/lint-imports

bench: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/bench_logging.py
	$(VENV)/bin/python benchmarks/bench_buffer.py

## `otel-session view` at volume: a million records (about 0.8 GB in a temporary directory, removed after), then
## the index build, the API's answers and, with Python's playwright and /usr/bin/chromium, rendered pages.
## About four minutes on two cores, so not part of `make bench`; smaller: BENCH_VIEW_ARGS="--records 100000".
bench-view: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/bench_view.py $(BENCH_VIEW_ARGS)

redis:
	bash scripts/ensure-redis.sh

chromium:
	bash scripts/ensure-chromium.sh

## The OpenTelemetry Collector of collector-builder.yaml, built once into a cache outside the repository;
## validates collector-config.yaml and prints the binary's path on its last line (needs Go).
collector:
	@bash scripts/build-collector.sh

## The browser page's bundle (web/dist/app.js): the locked npm packages, then esbuild.
web: web/dist/app.js

web/node_modules/.package-lock.json: web/package-lock.json web/package.json
	cd web && npm ci --no-audit --no-fund --loglevel=error

web/dist/app.js: web/node_modules/.package-lock.json $(wildcard web/src/*.js)
	cd web && node_modules/.bin/esbuild src/main.js --bundle --format=esm --target=es2020 --log-level=warning \
	  --outfile=dist/app.js

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[dev,browser]'
	touch $@

# Installing against the pins proves pip never has to move one of them.
$(PINS_VENV)/.installed: pyproject.toml $(PINS)
	$(PYTHON) -m venv $(PINS_VENV)
	$(PINS_VENV)/bin/python -m pip install -q --upgrade pip
	$(PINS_VENV)/bin/python -m pip install -q -c $(PINS) -e '.[dev]'
	$(PINS_VENV)/bin/python scripts/check_pins.py $(PINS)
	touch $@

clean:
	rm -rf $(VENV) $(PINS_VENV) web/node_modules web/dist .otel-session .pytest_cache .mypy_cache .ruff_cache
