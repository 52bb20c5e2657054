# Nudge: every command the README names. `make run` and `make test` need only
# python3 (3.11) on the machine; the virtualenv is made on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAGE ?= dev
AWS_PORT ?= 4566
PORT ?= 8000

.PHONY: run test unit integration e2e packaging bench package deploy clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python requirements.txt requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	printf '#!%s\nimport sys\nsys.path.insert(0, "%s")\nfrom chalicelib.cli import main\nsys.exit(main())\n' "$(abspath $(BIN)/python)" "$(CURDIR)" > $(BIN)/nudge && chmod +x $(BIN)/nudge
	touch $@

## Start the whole engine on the embedded AWS emulator (Ctrl-C stops it).
## PORT (API, 8000), AWS_PORT (emulator, 4566), NUDGE_WRITE_KEY and
## NUDGE_ADMIN_TOKEN override the defaults; the banner shows what is in use.
run: $(VENV)/.installed
	AWS_PORT=$(AWS_PORT) PORT=$(PORT) $(BIN)/python -m infra.local_stack

## Debian's headless Chromium and its driver, for the browser tests (tests/e2e);
## installed once with apt-get (as root) when either is missing.
.PHONY: browser
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium chromium-driver; \
	fi

## Every test: unit, integration, packaging and end-to-end on the local stack.
test: $(VENV)/.installed browser
	$(BIN)/python -m pytest

unit integration e2e packaging: $(VENV)/.installed
	$(BIN)/python -m pytest tests/$@

e2e: browser

## Cost and speed figures, as ratios measured in one run (see README).
bench: $(VENV)/.installed
	$(BIN)/python -m bench

## Loss and duplicates under injected faults and at-least-once delivery (see README, Reliability).
.PHONY: reliability
reliability: $(VENV)/.installed
	PYTHONHASHSEED=0 $(BIN)/python -m bench.reliability

## Build the deployable template and artifacts into build/package.
package: $(VENV)/.installed
	$(BIN)/python -m layers.package --stage $(STAGE) --out build/package

## Deploy build/package with CloudFormation (needs AWS credentials and NUDGE_ARTIFACT_BUCKET).
deploy: package
	$(BIN)/python -m layers.deploy --stage $(STAGE) --package build/package

clean:
	rm -rf build .pytest_cache
