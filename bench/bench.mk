# bench/bench.mk - convoy vs ONNX Runtime vs torch (included by the top-level Makefile).
#   make bench-compare [MODELS="resnet18 mobilenet_v2"] [SECONDS=3] [THREADS=2] [ROUNDS=1]
#                      [BENCH_JSON=build/bench-compare.json]
# Runs convoy, onnxruntime-node and torch (torch.jit, frozen) one after the other on each
# model at batch 1 and batch 16 and prints a Markdown table (tools/bench_compare.py). Needs
# the model zoo (`make models-zoo`, python3-torch) and onnxruntime-node, which it installs into
# bench/node_modules (git-ignored) when missing; models/zoo/NAME.onnx is converted to
# $(BUILD)/zoo/NAME.cvy when that is missing or older. A model whose files are missing or
# whose conversion fails is skipped (or timed without convoy) with a note. A benchmark, not a
# test: run it on an otherwise idle machine.

MODELS ?= fashion-mnist resnet18 resnet50 mobilenet_v2 squeezenet1_1 densenet121
SECONDS ?= 3
THREADS ?= 2
ROUNDS ?= 1
BENCH_JSON ?= $(BUILD)/bench-compare.json
BENCH_ZOO := models/zoo
BENCH_CVY := $(BUILD)/zoo

.PHONY: bench-compare
bench-compare: $(CLI) | deps-tools
	@if [ ! -d bench/node_modules/onnxruntime-node ]; then \
		echo "installing onnxruntime-node into bench/node_modules" >&2; \
		(cd bench && npm install --ignore-scripts --no-audit --no-fund >&2) || exit 1; \
	fi
	@mkdir -p $(BENCH_CVY); \
	for m in $(MODELS); do \
		if [ "$$m" = fashion-mnist ]; then \
			if [ ! -f $(BUILD)/fashion-mnist.onnx ] && [ -f models/fashion-mnist.cvy ]; then \
				echo "exporting $(BUILD)/fashion-mnist.onnx" >&2; \
				$(PYTHON) tools/train_fashion.py --export-only --out models/fashion-mnist.cvy \
					--onnx $(BUILD)/fashion-mnist.onnx >&2 || \
					echo "note: exporting $(BUILD)/fashion-mnist.onnx failed" >&2; \
			fi; \
			continue; \
		fi; \
		onnx=$(BENCH_ZOO)/$$m.onnx; cvy=$(BENCH_CVY)/$$m.cvy; \
		if [ ! -f $$onnx ]; then \
			echo "note: $$onnx is missing (make models-zoo): $$m skipped" >&2; \
		elif [ ! -f $$cvy ] || [ $$onnx -nt $$cvy ]; then \
			echo "converting $$onnx -> $$cvy" >&2; \
			if $(CLI) convert $$onnx $$cvy.tmp >&2; then mv -f $$cvy.tmp $$cvy; \
			else rm -f $$cvy.tmp $$cvy; echo "note: converting $$m failed" >&2; fi; \
		fi; \
	done
	$(PYTHON) tools/bench_compare.py --convoy $(CLI) --build $(BUILD) --cvy-dir $(BENCH_CVY) \
		--models "$(MODELS)" --seconds $(SECONDS) --threads $(THREADS) --rounds $(ROUNDS) \
		$(if $(BENCH_JSON),--json $(BENCH_JSON))

# `make bench-gemm`: the own GEMMs' GFLOP/s on one core, hot and cold weights, next to the
# FMA peak (bench/gemm_bench.c). A benchmark, not a test.
GEMM_BENCH := $(BUILD)/gemm_bench
$(GEMM_BENCH): bench/gemm_bench.c $(LIB) | $(DEPS_STAMP)
	$(CC) $(ALL_CFLAGS) -o $@ bench/gemm_bench.c $(LIB) $(PKG_LIBS)

.PHONY: bench-gemm
bench-gemm: $(GEMM_BENCH)
	$(GEMM_BENCH)
