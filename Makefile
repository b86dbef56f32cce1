# meal-lite: the two quick-start commands (`make book`, `make demo`) and `make test`.
# Each target creates .venv when it is missing, so every command works alone on a fresh clone.
# The README's commands run offline: MEAL_LITE_PROFILE defaults to `offline` here unless the caller set it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.meal-lite-installed
export MEAL_LITE_PROFILE ?= offline

.PHONY: venv demo test test-imagenette book browser-deps bench clean

venv: $(STAMP)

# torch and torchvision are pinned here (and in environment.yml) to the builds this project is tested
# with; the package itself only asks for ranges.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -e '.[book,test,onnx]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/meal-lite demo

book: $(STAMP)
	HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-$$( [ "$$MEAL_LITE_PROFILE" = offline ] && echo 1 || echo 0 )} \
	  $(BIN)/jupyter-book build --warningiserror --keep-going .
	@echo "Book built: open _build/html/index.html"

# Headless Chromium for the book's browser test, from Debian's packages (a browser downloaded by a
# test tool's own installer does not work offline). Needs root; without it the test says how to enable it.
browser-deps:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
	  echo "chromium and chromedriver present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	else \
	  echo "warning: chromium not installed and no root: the browser test will skip (sudo apt-get install chromium chromium-driver)"; \
	fi

# The suite in two pytest-xdist workers (a chapter's cells stay together and in order: --dist loadfile;
# the longest files first, as tests/conftest.py orders them: --no-loadscope-reorder), every chapter
# executed once by nbval and saved to _build/executed; the browser test, after the last chapter in that
# order, builds the book from those saved chapters (no chapter runs twice; it waits for one still running
# on the other worker) and checks it in headless Chromium while the other worker runs the short files.
# The chapters run as a Colab reader has them (tests/chapters_from_wheel.py): the package installed
# from a freshly built wheel, each kernel in an empty folder outside the repository.
PYTEST_RUN := HF_HUB_OFFLINE=1 MEAL_LITE_PROFILE=offline $(BIN)/python -m pytest -p executed_notebooks \
	  --executed-dir _build/executed
TEST_WORKERS ?= 2
TEST_THREADS ?= 1

# One torch thread per worker (and per notebook kernel it starts): two workers then fill the two cores
# without oversubscribing them. Tests assert nothing that depends on the thread count.
test: $(STAMP) browser-deps
	OMP_NUM_THREADS=$(TEST_THREADS) $(PYTEST_RUN) -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests book \
	  -p chapters_from_wheel --chapters-from-wheel \
	  --nbval-lax --nbval-current-env --nbval-kernel-startup-timeout 120 --nbval-cell-timeout 900

# Every chapter under nbval in the imagenette profile, against loopback stand-ins of its two servers
# (tests/imagenette_standins.py): a small generated ImageNette archive and the profile's real timm
# architectures with random weights, served on 127.0.0.1 by a server the run starts and stops. The
# chapters run as in `make test` (installed from a freshly built wheel, each kernel in an empty folder),
# in two workers with one torch thread each, sharing one data folder and one hub cache. HF_HUB_OFFLINE
# is unset (the plugin drops it and any proxy too): the only network is 127.0.0.1. Beside the chapters,
# `meal-lite demo` and the validation search of bench/evidence_search.py at their smallest lengths
# (tests/test_imagenette_demo.py, tests/test_imagenette_search.py). Then, alone on the machine,
# the Pages workflow's own build step against a second stand-in server (tests/test_pages_build.py): run
# beside the nbval kernels, its build once waited forever on a kernel that had gone idle (seen once, cause
# not found; run alone it passed), so it gets the machine to itself and all its cores.
IMAGENETTE_ENV := env -u HF_HUB_OFFLINE -u TRANSFORMERS_OFFLINE MEAL_LITE_PROFILE=imagenette
test-imagenette: $(STAMP)
	$(IMAGENETTE_ENV) OMP_NUM_THREADS=$(TEST_THREADS) \
	  $(BIN)/python -m pytest -p imagenette_standins --imagenette-standins -p chapters_from_wheel --chapters-from-wheel \
	  -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder book tests/test_imagenette_demo.py \
	  tests/test_imagenette_search.py \
	  --nbval-lax --nbval-current-env --nbval-kernel-startup-timeout 120 --nbval-cell-timeout 900
	$(IMAGENETTE_ENV) $(BIN)/python -m pytest -p imagenette_standins --imagenette-standins tests/test_pages_build.py

bench: $(STAMP)
	$(BIN)/python bench/step_cost.py

clean:
	rm -rf _build runs
