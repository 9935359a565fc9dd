# convoy - one non-recursive Makefile.
#   make            build/libconvoy.a, build/convoy (and build/convoyd once the server exists)
#   make test       install missing packages, build, run every test
#   make asan       the same tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   make tsan       the same tests under ThreadSanitizer
#   make model      retrain models/fashion-mnist.cvy (needs Debian's python3-torch)
#   make bench      engine benchmarks, convoy next to onnxruntime-node

CC ?= cc
CFLAGS ?= -O2 -g
BUILD ?= build
SAN ?=
TSAN ?=
PYTHON ?= /usr/bin/python3

# Older OpenBLAS builds misbehave on some AVX-512 CPUs; pin its AVX2 kernel unless told otherwise.
export OPENBLAS_CORETYPE ?= Haswell

PKG_CFLAGS = $(shell pkg-config --cflags openblas stb jansson libmicrohttpd libprotobuf-c zlib 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs openblas jansson zlib 2>/dev/null) -lstb -lpthread -lm

# Recursive (=), not :=: pkg-config must run after `deps` has installed the packages.
BASE_CFLAGS = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -fno-omit-frame-pointer \
	-ffp-contract=off -MMD -MP -Iinclude -Iengine $(PKG_CFLAGS)
ifneq ($(SAN),)
BASE_CFLAGS += -fsanitize=address,undefined -fno-sanitize-recover=undefined
SAN_LDFLAGS := -fsanitize=address,undefined
endif
ifneq ($(TSAN),)
BASE_CFLAGS += -fsanitize=thread
SAN_LDFLAGS := -fsanitize=thread
endif
ALL_CFLAGS = $(BASE_CFLAGS) $(CFLAGS)
LDFLAGS_ALL = $(SAN_LDFLAGS) $(LDFLAGS)

# Per-file instruction sets: the rest of the code builds for baseline x86-64 and dispatches.
ISA_avx2 := -mavx2 -mfma -mf16c
# -mprfchw: prefetches for writing (PREFETCHW), which every AVX-512 CPU has
ISA_avx512 := -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma -mprfchw
isa_flags = $(if $(findstring _avx512,$1),$(ISA_avx512),$(if $(findstring _avx2,$1),$(ISA_avx2)))

ENGINE_SRC := $(sort $(wildcard engine/*.c))
ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/%.o)
CLI_SRC := $(sort $(wildcard tools/*.c))
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
CLI_LIB_OBJ := $(filter-out $(BUILD)/tools/convoy.o,$(CLI_OBJ))
UNIT_SRC := $(sort $(wildcard tests/unit_*.c))
UNIT_OBJ := $(UNIT_SRC:%.c=$(BUILD)/%.o)

LIB := $(BUILD)/libconvoy.a
CLI := $(BUILD)/convoy
UNIT := $(BUILD)/test_unit
TEST_BINS := $(UNIT)

.PHONY: all deps test asan tsan clean model bench run FORCE
all: $(LIB) $(CLI)

# ---- packages ------------------------------------------------------------------------------
DEB_BUILD := build-essential pkg-config libopenblas-dev libjansson-dev libmicrohttpd-dev \
	libstb-dev libprotobuf-c-dev protobuf-c-compiler libonnx-dev libsystemd-dev zlib1g-dev
DEB_TEST := check libsubunit-dev libcurl4-openssl-dev dataset-fashion-mnist libonnx-testdata \
	chromium python3-yaml python3-numpy
DEB_TOOLS := python3-torch python3-torchvision python3-numpy python3-onnx
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEPS_STAMP := $(BUILD)/.deps-$(shell echo $(DEB_BUILD) $(DEB_TEST) | md5sum | cut -c1-8)

deps: $(DEPS_STAMP)
$(DEPS_STAMP):
	@missing=$$(for p in $(DEB_BUILD) $(DEB_TEST); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@mkdir -p $(BUILD) && touch $@

deps-tools: deps
	@missing=$$(for p in $(DEB_TOOLS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; fi

# ---- build ---------------------------------------------------------------------------------
# Every object waits for the packages; re-evaluate pkg-config flags after installing them.
$(BUILD)/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(call isa_flags,$<) $(EXTRA_CFLAGS) -c $< -o $@

$(LIB): $(ENGINE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(CLI): $(CLI_OBJ) $(LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $(CLI_OBJ) $(LIB) $(PKG_LIBS)

$(UNIT): $(UNIT_OBJ) $(CLI_LIB_OBJ) $(LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $(UNIT_OBJ) $(CLI_LIB_OBJ) $(LIB) $(PKG_LIBS) \
		$(shell pkg-config --libs check 2>/dev/null)

-include server/server.mk
-include engine/onnx.mk
-include bench/bench.mk
-include tests/fuzz/fuzz.mk
-include tests/faults.mk
-include deploy/deploy.mk
-include server/console.mk

# ---- tests ---------------------------------------------------------------------------------
test: all $(TEST_BINS)
	@set -e; for t in $(TEST_BINS); do echo "== $$t"; CONVOY_BUILD=$(BUILD) $$t; done

asan:
	$(MAKE) BUILD=build/asan SAN=1 CFLAGS="-O1 -g" test

# OpenBLAS is not instrumented: tests/tsan.supp names it (and nothing of ours).
tsan:
	TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp halt_on_error=1 second_deadlock_stack=1 $$TSAN_OPTIONS" \
		$(MAKE) BUILD=build/tsan TSAN=1 CFLAGS="-O1 -g" test

# ---- models and benchmarks -----------------------------------------------------------------
model: deps-tools
	$(PYTHON) tools/train_fashion.py --out models/fashion-mnist.cvy --onnx $(BUILD)/fashion-mnist.onnx

bench: all
	tools/bench.sh $(CLI)

clean:
	rm -rf build

-include $(ENGINE_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(UNIT_OBJ:.o=.d)
