# musicrec: the two commands are `make demo` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
PY := .venv/bin/python
export PYTHONPATH := $(CURDIR)

.PHONY: setup up down status demo test test-fast bench corpus clean-data

setup:            ## install venv, jars, Kafka, FerretDB (idempotent)
	@bash scripts/setup.sh

up: setup         ## start Kafka and FerretDB on loopback (idempotent)
	@$(PY) -m stack.services up

down:             ## stop the local services (data is kept)
	@$(PY) -m stack.services down

status:           ## versions, ports and health of the services
	@$(PY) -m stack.services status

demo: up          ## run the whole pipeline on the demo corpus
	@bash scripts/demo.sh

test: up          ## unit and integration tests over the real services
	@$(PY) -m pytest -q

test-fast: setup  ## the tests that need no services
	@$(PY) -m pytest -q -m "not integration"

bench: up         ## print the benchmark tables
	@bash benchmarks/run_all.sh
