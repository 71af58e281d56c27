# tunekit: the two commands a new user needs are `make demo` and `make test`; both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TUNEKIT := $(VENV)/bin/tunekit
STAMP := $(VENV)/.tunekit-installed
DEMO_DIR ?= runs/demo
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu

.PHONY: install demo test lint format compile check-compiled ci-local bench image-check clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, on its own, from PyTorch's CPU index (on PyPI torch==2.13.0 is the CUDA build, gigabytes);
	# where that index is not reachable, the plain pin (this project's machines carry the CPU wheel locally).
	# For a CUDA build on a GPU machine: make install TORCH_INDEX_URL=https://pypi.org/simple
	$(PY) -m pip install --quiet --timeout 30 --retries 1 --index-url $(TORCH_INDEX_URL) torch==2.13.0 \
		|| $(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[local,dev]'
	touch $(STAMP)

install: $(STAMP)

# force=true: a second `make demo` trains again and meets the first run's model as champion, instead of ending
# early as "skipped: data unchanged" (what a scheduled retraining run on the same data does).
demo: install
	$(TUNEKIT) compile
	$(TUNEKIT) run supervised-tuning --local --config examples/supervised_tuning.yaml --output-dir $(DEMO_DIR) \
		--set force=true

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

compile: install
	$(TUNEKIT) compile
	$(PY) -m tunekit.pipelines.docs docs/configuration.md

# Fails when compiled/ or docs/configuration.md differs from what the code produces (run in CI). Compiles into
# build/check and compares, so it needs no git checkout (Cloud Build's GitHub sources may have no .git).
check-compiled: install
	rm -rf build/check && mkdir -p build/check
	$(TUNEKIT) compile --output-dir build/check/compiled >/dev/null
	$(PY) -m tunekit.pipelines.docs build/check/configuration.md
	@diff -r compiled build/check/compiled >/dev/null && diff -q docs/configuration.md build/check/configuration.md >/dev/null \
		|| { diff -ru compiled build/check/compiled | head -40; diff -u docs/configuration.md build/check/configuration.md | head -20; \
		     echo "compiled/ or docs/configuration.md is stale: run 'make compile' and commit the result"; exit 1; }

# The Cloud Build steps that need no container engine or cloud account (checks, compile, the publish and
# schedule steps' skip branches), in cloudbuild.yaml's waitFor order. `make ci-local CI_ARGS=--print` lists them.
ci-local: install
	$(PY) cloudbuild/ci_local.py --config cloudbuild.yaml $(CI_ARGS)

bench: install
	$(PY) bench/run_all.py

# Builds components/Dockerfile's cpu image with podman (root, podman and debootstrap needed) and runs every compiled
# pipeline's steps inside it; prints the image size and a step table. IMAGE_CHECK_ARGS=--skip-unavailable
# exits 0 with a message where the machine cannot build it (no root, podman, Debian mirror or package index).
image-check: install
	$(PY) cloudbuild/image_check.py $(IMAGE_CHECK_ARGS)

clean:
	rm -rf runs build *.egg-info .pytest_cache .ruff_cache

# The component images built into your Artifact Registry with Cloud Build (the default image is not published):
# `make publish-image PROJECT=my-project REGION=us-central1`, then submit with the TUNEKIT_IMAGE it prints.
.PHONY: publish-image test-cloud
publish-image:
	PROJECT=$(PROJECT) REGION=$(REGION) bash cloudbuild/publish_image.sh

# tests/cloud against a real project (costs money; see each test's docstring). Without -m cloud they run against
# the fakes in `make test`. `make test-cloud PROJECT=my-project REGION=us-central1 BUCKET=my-bucket`
test-cloud: install
	TUNEKIT_CLOUD_PROJECT=$(PROJECT) TUNEKIT_CLOUD_REGION=$(REGION) TUNEKIT_CLOUD_BUCKET=$(BUCKET) \
		$(PY) -m pytest -q -m cloud tests/cloud
