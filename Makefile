# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
MODEL  ?= roberta-base
HW     ?= hw_specs/pcm_1M.yaml
OUT    ?= aimc-out/$(MODEL)

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/aimc-compile $(MODEL) --hw $(HW) --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf aimc-out .pytest_cache
