# Two commands do all set-up on a fresh machine: `make demo` and `make test` (both install if needed).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
CONSTRAINTS := requirements/constraints.txt
STAMP := $(VENV)/.installed
DEMO_HF_HOME := .cache/hf-demo
DEMO_OUT ?= demo_output

.PHONY: install demo test bench bench-sweep bench-finetune bench-score bench-shards lock clean

install: $(STAMP)

# Reinstalls only when the dependency declarations change.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[test]"
	scripts/install-ffmpeg-libs.sh
	touch $(STAMP)

# The example sweep, offline, on a tiny random-weight model with the real SAO 1.0 architecture.
# It produces noise: see README "Real audio" for the one-line command with real weights.
demo: install
	$(PY) -m stable_audio_tools_ext.model.tiny --hf-home $(DEMO_HF_HOME)
	$(PY) -m stable_audio_tools_ext.run.demo --hf-home $(DEMO_HF_HOME) --output-dir $(DEMO_OUT)

# Two pytest-xdist workers, a test file each at a time (module fixtures: one trained run, one studio,
# one SLURM cluster per file): the 2-core machine is otherwise half idle between subprocesses.
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# Re-resolve the pinned set (run on Python 3.11 / x86_64, then commit requirements/constraints.txt).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e ".[test]"
	.lock-venv/bin/pip freeze --all --exclude-editable | grep -v -E "^(pip|-e)[ =]" > $(CONSTRAINTS)
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .cache $(DEMO_OUT)

# Side-by-side throughput of generate.py and the reference path, then the guidance-interval sweep; both append to docs/BENCHMARKS.md.
bench: install
	$(PY) bench/throughput.py
	$(PY) -m bench.cfg_interval

# guidance interval (cfg_interval) on a sweep: DiT rows and time with and without; appends to docs/BENCHMARKS.md
bench-sweep: install
	$(PY) -m bench.cfg_interval

# fine-tuning: steps per second on an audio folder vs its pre-encoded latents (docs/BENCHMARKS.md)
bench-finetune: install
	$(PY) -m bench.finetune_throughput

# generate.py --score clap: a tree generated without and with CLAP scoring, and scoring alone; in the same run
# files per second of the CLAP score, FD_openl3 (OpenL3 frames) and KL_passt (PaSST probabilities) (docs/BENCHMARKS.md)
bench-score: install
	$(PY) -m bench.clap_overhead

# file-per-item vs WebDataset shards: 10,000 items generated both ways (files created, wall time), then read through stable-audio-tools' loader (docs/BENCHMARKS.md)
bench-shards: install
	$(PY) -m bench.shards
