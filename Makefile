# meterlake — two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
export METERLAKE_IVY_DIR ?= $(CURDIR)/.cache/ivy
export METERLAKE_LOG_DIR ?= $(CURDIR)/.cache/logs

.PHONY: setup lock demo demo-s3 test chaos alert-rules lint bench airflow clean s3-up s3-down \
	kafka-up kafka-down

setup: $(VENV)/.installed .cache/ivy/.warm

$(VENV)/.installed: requirements.lock setup.cfg
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip sync -q --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $@

# Resolve Delta, hadoop-aws and the Kafka connector from Maven Central once, into .cache/ivy
# (or METERLAKE_IVY_DIR; the marker stays here either way).
.cache/ivy/.warm: $(VENV)/.installed meterlake/spark.py
	$(BIN)/python -m meterlake.spark --warm
	mkdir -p $(@D)
	touch $@

lock:
	$(BIN)/uv pip compile -q requirements.in -o requirements.lock --python-version 3.11

demo: setup
	$(BIN)/meterlake demo

lint: $(VENV)/.installed
	$(BIN)/ruff check meterlake tests jobs bench dags
	$(BIN)/ruff format --check meterlake tests jobs bench dags

# MinIO for the object-storage tests and `make s3-up`, built once from the Go module proxy.
.cache/bin/minio: infra/s3.sh
	bash infra/s3.sh install
	touch $@

# stripe-mock (Stripe's mock API server) for the Stripe tests and `infra/stripe-mock.sh start`.
.cache/bin/stripe-mock: infra/stripe-mock.sh
	bash infra/stripe-mock.sh install
	touch $@

# Debian's Chromium and ChromeDriver for the dashboard's browser test.
/usr/bin/chromedriver: infra/chromium.sh
	bash infra/chromium.sh install

# promtool (Prometheus's rule checker) for the alert-rule tests.
.cache/bin/promtool: infra/promtool.sh
	bash infra/promtool.sh install
	touch $@

# Apache Kafka (the broker's jars from Maven Central) for the Kafka tests and `make kafka-up`.
.cache/kafka/.installed: $(VENV)/.installed infra/kafka.sh infra/kafka/ivy.xml
	bash infra/kafka.sh install
	touch $@

kafka-up: setup .cache/kafka/.installed
	bash infra/kafka.sh start

kafka-down:
	bash infra/kafka.sh stop

s3-up: setup .cache/bin/minio
	bash infra/s3.sh start

s3-down:
	bash infra/s3.sh stop

# The demo with the warehouse in the local MinIO bucket (s3a://meterlake/demo).
demo-s3: s3-up
	AWS_ACCESS_KEY_ID=$${AWS_ACCESS_KEY_ID:-meterlake} \
	AWS_SECRET_ACCESS_KEY=$${AWS_SECRET_ACCESS_KEY:-meterlake-secret} \
	METERLAKE_S3_ENDPOINT=$${METERLAKE_S3_ENDPOINT:-http://127.0.0.1:$${METERLAKE_S3_PORT:-9000}} \
	METERLAKE_WAREHOUSE=s3a://meterlake/demo $(BIN)/meterlake demo

test: setup lint .cache/bin/minio .cache/bin/stripe-mock .cache/bin/promtool /usr/bin/chromedriver \
		.cache/kafka/.installed
	$(BIN)/python -m pytest -q tests

# The fault-injection tests at full size (20 SIGKILLs: over 15 minutes alone, hence the timeout).
chaos: setup
	$(BIN)/python -m pytest -q tests/chaos --chaos-full --timeout 3600

# Regenerate the Prometheus alerting rules from meterlake/monitoring/rules.py.
alert-rules: $(VENV)/.installed
	$(BIN)/meterlake alert-rules --out infra/prometheus/meterlake-alerts.yml

# Every benchmark, then bench/RESULTS.md from the figures they saved (about 2 hours here).
# The full rollup rebuild of 22 M events (bench/invoices.py) runs out of heap at the
# default 2g driver memory; the report states the setting.
bench: export METERLAKE_DRIVER_MEMORY ?= 8g
bench: setup
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/parse.py
	$(BIN)/python bench/microbatch.py
	$(BIN)/python bench/accounting.py
	$(BIN)/python bench/cli.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/freshness.py
	$(BIN)/python bench/invoices.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/results.py

# Airflow with the UI on http://127.0.0.1:8080, SQLite and this project's DAGs; state in
# .airflow/ (the admin password is printed at start and kept in .airflow/).
airflow: setup
	PATH=$(CURDIR)/$(BIN):$$PATH AIRFLOW_HOME=$(CURDIR)/.airflow \
	AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__LOAD_EXAMPLES=False \
	AIRFLOW__API__HOST=127.0.0.1 \
	AIRFLOW__API__PORT=$${AIRFLOW_PORT:-8080} \
	METERLAKE_WAREHOUSE=$${METERLAKE_WAREHOUSE:-$(CURDIR)/warehouse} \
	$(BIN)/airflow standalone

clean:
	rm -rf warehouse spark-warehouse metastore_db .pytest_cache
