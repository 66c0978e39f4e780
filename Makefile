# The two set-up commands of the README:
#   make demo   installs everything into .venv and runs the main job
#   make test   installs everything into .venv and runs the test suite
# Both work on a fresh machine with nothing installed by hand. `make check` runs
# ruff and mypy --strict (.ci/run runs it before the tests).

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export MAMORU_CACHE_DIR ?= $(CURDIR)/.cache
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: demo test test-fast check install models face-data system-deps clean

# insightface is used for its alignment and SCRFD decoder only; its wheel pins
# opencv-python (GUI build), which clashes with opencv-python-headless, so it is
# installed without dependencies (the ones it needs are ours).
$(BIN)/mamoru: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps 'insightface==2.1'
	touch $@

install: $(BIN)/mamoru

# Debian packages for the edge loop and its tests: GStreamer's RTSP server (run
# by the system python3 through gi, see mamoru/demo/camera_server.py) with the
# codecs to decode and re-encode test clips, and ffmpeg; Chromium and CJK fonts for
# the tablet and notice pages; poppler-utils to render the A4 sign in its test;
# systemd for `systemd-creds` (key custody). A machine that already has them all
# does no network work.
SYSTEM_PACKAGES := gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi \
	gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly \
	gstreamer1.0-libav gstreamer1.0-tools ffmpeg chromium fonts-noto-cjk poppler-utils systemd
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

test: system-deps models face-data
	$(BIN)/python -m pytest

# The inner loop, under 2 minutes on 2 cores: units and the API, without the slow tier (RTSP,
# browser, real `mamoru serve` processes, crash loops, the fuzz gate; markers in pyproject.toml).
# It fetches nothing: run `make test` (or `make models face-data`) once first.
test-fast: install
	$(BIN)/python -m pytest -m "not slow"

# Both read their settings (line length, strict, files) from pyproject.toml.
check: install
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .cache
