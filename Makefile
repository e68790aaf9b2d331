# musicrec: the two commands are `make demo` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
PY := .venv/bin/python
export PYTHONPATH := $(CURDIR)

.PHONY: setup up down status demo test test-cluster test-fast bench corpus dashboard artefacts cluster-up cluster-down cluster-status

setup:            ## install venv, jars, Kafka, FerretDB (idempotent)
	@bash scripts/setup.sh

up: setup         ## start PostgreSQL, FerretDB and Kafka on loopback (idempotent)
	@$(PY) -m stack.services up

down:             ## stop the local services (data is kept)
	@$(PY) -m stack.services down

status:           ## versions, ports and health of the services
	@$(PY) -m stack.services status

demo: up          ## run the whole pipeline on the demo corpus
	@bash scripts/demo.sh

test: up          ## unit and integration tests over the real services
	@$(PY) -m pytest -q --durations=25

test-cluster: up  ## only the cluster test (tests/test_cluster.py: the jobs on a local standalone cluster vs local[2]; also in `make test`)
	@$(PY) -m pytest -q -m cluster tests/test_cluster.py

test-fast: setup  ## the tests that need no services
	@$(PY) -m pytest -q -m "not integration"

corpus: setup     ## build the demo corpus (MUSICREC_DEMO_CORPUS="--small" for ~70 clips)
	@$(PY) -m feature_extraction.corpus $(MUSICREC_DEMO_CORPUS)

dashboard: up     ## serve the dashboard on 127.0.0.1:8501
	@bash scripts/dashboard.sh

bench: up         ## print the benchmark tables
	@bash benchmarks/run_all.sh

artefacts: setup  ## build (or reuse) the code zip and packed environment for spark-submit on a cluster
	@$(PY) -m deploy

cluster-up: setup ## a local Spark standalone master + 2 one-core workers on loopback
	@$(PY) -m stack.cluster up

cluster-down:     ## stop the local Spark cluster
	@$(PY) -m stack.cluster down

cluster-status:   ## the local Spark cluster's processes and workers
	@$(PY) -m stack.cluster status
