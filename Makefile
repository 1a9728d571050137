# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
MODEL  ?= roberta-base
HW     ?= hw_specs/pcm_1M.yaml
OUT    ?= aimc-out/$(MODEL)

.PHONY: demo test install clean browser

install: $(STAMP)

# pyproject.toml gives ranges; constraints.txt is the tested set, so both commands install the same versions.
# torch first, pinned: the CPU build (an unpinned torch can pull a multi-GB CUDA build).
$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/aimc-compile $(MODEL) --hw $(HW) --out $(OUT)

test: $(STAMP) browser
	$(PY) -m pytest -q -n 2 --dist loadfile   # two workers, each test file on one (its fixtures built once)

# The report's browser test drives Debian's chromium; install it when missing and we are root (CI).
browser:
	@if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium for the report's browser test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
			|| echo "WARNING: could not install chromium; the browser test will be skipped"; \
	fi

clean:
	rm -rf aimc-out .pytest_cache
