# Two commands do all the set-up on a fresh machine:
#   make app    install everything, then start the app on http://127.0.0.1:7860
#   make test   install everything, then run the test suite
PYTHON ?= python3
PIP = $(PYTHON) -m pip
# idle OpenMP threads must not spin: torch and numba share the cores (see samic/__init__.py)
export OMP_WAIT_POLICY ?= PASSIVE
APT_PACKAGES = chromium chromium-driver libjxl-tools

.PHONY: app test install system-packages

install: system-packages
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -r requirements-nodeps.txt
	$(PIP) install -q --no-deps -e .

# Debian packages: headless Chromium for the browser test and plot export, cjxl for JPEG XL.
system-packages:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null || ! command -v cjxl >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
		else echo "note: install $(APT_PACKAGES) with apt for the browser test and JPEG XL"; fi; \
	fi

app: install
	$(PYTHON) app.py

test: install
	$(PYTHON) -m pytest -q
