# The two set-up commands of the README:
#   make demo   installs the locked packages into .venv and runs the main job
#   make test   installs the locked packages into .venv and runs the test suite
# Both work on a fresh machine with nothing installed by hand. `make check` runs
# ruff and mypy --strict (.ci/run runs it before the tests). `make lock` regenerates
# the lock files in requirements/ from pyproject.toml (the only step that resolves
# versions; every install takes them from a lock, hash-checked).

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export MAMORU_CACHE_DIR ?= $(CURDIR)/.cache
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: demo test test-fast check install lock models face-data system-deps clean

# The lock the venv is built from. requirements/test.txt (the default) is the
# development environment: the runtime packages plus the `test` and `bench` extras
# (`make check` type-checks benchmarks/, which import matplotlib). A store box needs
# only the runtime: `make install LOCK=requirements/runtime.txt`.
LOCK ?= requirements/test.txt
# Names the lock the venv was built from: a different or changed lock (or
# pyproject.toml, for our own package's entry points) rebuilds the venv from scratch,
# so it holds exactly the locked packages and nothing left from an earlier lock.
INSTALLED := $(VENV)/.installed-$(notdir $(LOCK))

# Every package, pip and setuptools included, comes from the lock with its hashes
# checked and no dependency resolution (--no-deps): pip installs exactly the listed
# files. Our package goes in editable, without dependencies, built by the locked
# setuptools (--no-build-isolation: nothing unlocked is fetched to build it).
# `pip check` then proves the lock satisfies every requirement in pyproject.toml
# (a dependency added there without `make lock` fails here, naming it); its one
# accepted complaint is insightface's opencv-python, left out of the lock on
# purpose (see requirements/exclude.txt).
$(INSTALLED): $(LOCK) pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@! $(BIN)/pip check | grep -vx -e 'insightface 2.1 requires opencv-python, which is not installed.' \
		-e 'No broken requirements found.'
	touch $@

install: $(INSTALLED)

# Regenerates both locks with uv (pinned; installed into a throw-away venv, removed
# after), chosen over pip-tools for --excludes: opencv-python is kept out of the
# resolution itself, not just dropped from the output after being resolved. uv keeps
# the versions already in a lock where they still fit; `make lock LOCK_FLAGS=--upgrade`
# moves everything to the newest. The runtime lock is constrained to the test lock's
# versions: a store box runs the versions the tests ran.
# Platforms: resolved for CPython 3.11 on manylinux_2_28 x86_64, and each pin lists
# the hashes of all its files. For the lock of this commit the aarch64-manylinux_2_28
# resolution came out identical and every pinned version has a CPython 3.11 linux
# aarch64 wheel, so an aarch64 Jetson installs from the same file (its onnxruntime
# then is PyPI's CPU build); recheck that after a `make lock` that changes versions.
UV_VERSION := 0.13.8
LOCK_FLAGS ?=
UV_COMPILE = uv pip compile --quiet --no-config --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --excludes requirements/exclude.txt \
	--custom-compile-command 'make lock' $(LOCK_FLAGS)

lock:
	tool=$$(mktemp -d) && trap 'rm -rf "$$tool"' EXIT && \
	$(PYTHON) -m venv "$$tool" && "$$tool/bin/pip" install --quiet 'uv==$(UV_VERSION)' && \
	PATH="$$tool/bin:$$PATH" UV_CACHE_DIR="$$tool/cache" && export PATH UV_CACHE_DIR && \
	$(UV_COMPILE) pyproject.toml requirements/venv.in --extra test --extra bench \
		--output-file requirements/test.txt && \
	$(UV_COMPILE) pyproject.toml requirements/venv.in --constraints requirements/test.txt \
		--output-file requirements/runtime.txt

# Debian packages for the edge loop and its tests: GStreamer's RTSP server (run
# by the system python3 through gi: mamoru/demo/camera_server.py, started by
# mamoru/demo/cameras.py for the demo and the edge tests) with the
# codecs to decode and re-encode test clips, and ffmpeg; Chromium and CJK fonts for
# the tablet and notice pages; poppler-utils to render the A4 sign in its test;
# systemd for `systemd-creds` (key custody); postgresql for the chain back-end, whose tests
# start a throw-away cluster with its initdb/pg_ctl (registry/storage/postgres/cluster.py).
# A machine that already has them all does no network work.
SYSTEM_PACKAGES := gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi \
	gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly \
	gstreamer1.0-libav gstreamer1.0-tools ffmpeg chromium fonts-noto-cjk poppler-utils systemd \
	postgresql
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do \
		dpkg -s $$p 2>/dev/null | grep -q '^Status: install ok installed' || printf '%s ' $$p; \
		done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

models: install
	$(BIN)/mamoru models fetch --pack yunet-sface
	$(BIN)/mamoru models fetch --pack scrfd-mbf --accept-licence

face-data: install
	$(BIN)/python -m mamoru.face_data

demo: install system-deps
	$(BIN)/mamoru models fetch
	$(BIN)/mamoru demo

# The whole suite (under 15 minutes on 2 cores), in two passes that must both pass: every test
# but the `serial` ones on $(TEST_WORKERS) pytest-xdist workers, then the `serial` ones (a time,
# rate or latency limit; pyproject.toml's markers) in one process with the cores to themselves.
# Each worker is its own pytest session with its own session fixtures (a throw-away PostgreSQL
# cluster in its own temporary folder on a free port, a registry template, a browser) and its
# own basetemp; the models and face data in $(MAMORU_CACHE_DIR) are only read.
TEST_WORKERS ?= 2

test: system-deps models face-data
	$(BIN)/python -m pytest -n $(TEST_WORKERS) -m "not serial"
	$(BIN)/python -m pytest -m serial

# The inner loop: units and the API on $(TEST_WORKERS) workers, without the slow tier (RTSP,
# browser, real `mamoru serve` processes, crash loops, the fuzz gate, the serial tests; markers
# in pyproject.toml). It fetches nothing: run `make test` (or `make models face-data`) once first.
test-fast: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) -m "not slow"

# Both read their settings (line length, strict, files) from pyproject.toml.
check: install
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .cache
