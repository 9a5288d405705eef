# Two commands do all set-up on a fresh machine: `make demo` and `make test` (both install if needed).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
CONSTRAINTS := requirements/constraints.txt
STAMP := $(VENV)/.installed
DEMO_HF_HOME := .cache/hf-demo
DEMO_OUT ?= demo_output

.PHONY: install demo test bench lock clean

install: $(STAMP)

# Reinstalls only when the dependency declarations change.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[test]"
	@if ldconfig -p 2>/dev/null | grep -q 'libavdevice\.so\.'; then :; elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then debs="libavutil57 libavcodec59 libavformat59 libavdevice59 libavfilter8 libswscale6 libswresample4"; echo "installing FFmpeg 5.1 shared libraries for torchcodec (README: Dependencies)"; apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $$debs >/dev/null || { apt-get -o DPkg::Lock::Timeout=600 update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $$debs >/dev/null; } || echo "warning: could not install $$debs: torchaudio.load (stable-audio-tools' datasets) will fail"; else echo "note: torchaudio.load (stable-audio-tools' datasets) needs FFmpeg 4-8 shared libraries; see README Dependencies"; fi
	touch $(STAMP)

# The example sweep, offline, on a tiny random-weight model with the real SAO 1.0 architecture.
# It produces noise: see README "Real audio" for the one-line command with real weights.
demo: install
	$(PY) -m stable_audio_tools_ext.tiny --hf-home $(DEMO_HF_HOME)
	$(PY) -m stable_audio_tools_ext.demo --hf-home $(DEMO_HF_HOME) --output-dir $(DEMO_OUT)

test: install
	$(PY) -m pytest

# Re-resolve the pinned set (run on Python 3.11 / x86_64, then commit requirements/constraints.txt).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e ".[test]"
	.lock-venv/bin/pip freeze --all --exclude-editable | grep -v -E "^(pip|-e)[ =]" > $(CONSTRAINTS)
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .cache $(DEMO_OUT)

# Side-by-side throughput of generate.py and the reference path; appends to docs/BENCHMARKS.md.
bench: install
	$(PY) bench/throughput.py
