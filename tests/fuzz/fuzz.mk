# tests/fuzz/fuzz.mk - libFuzzer harnesses (included by the top-level Makefile).
#   make fuzz [FUZZ_SECONDS=60]   runs each harness for FUZZ_SECONDS on its corpus, one by one
#   make fuzz FUZZERS="onnx v2"   only these harnesses
# Harnesses: tests/fuzz/fuzz_<name>.c; seeds: tests/fuzz/seeds/<name>/ (tools/make_fuzz_seeds.py);
# the growing corpus lives in build/fuzz/corpus-<name>/. A crash or leak found is copied into
# tests/fuzz/regressions/<name>/, where `make test` replays it (tests/unit_fuzzregress.c for
# cvy, image and onnx; tests/server_fuzzregress.c for the server's multipart, body, v2, request).
# The server harnesses link only the server modules that need no HTTP (FUZZ_SERVER).

FUZZ_BUILD := build/fuzz
FUZZ_SECONDS ?= 60
FUZZERS := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SERVER := b64 body decode multipart v2_parse
FUZZ_SERVER_LIB := $(FUZZ_BUILD)/libconvoy-server.a
DEB_FUZZ := clang libclang-rt-14-dev

.PHONY: fuzz fuzz-deps
fuzz-deps: deps
	@missing=$$(for p in $(DEB_FUZZ); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; fi

# The engine and the HTTP-free server modules built by clang with ASan/UBSan and libFuzzer's
# coverage hooks, by a sub-make (FUZZ_SUBMAKE keeps this rule out of it).
ifneq ($(FUZZ_SUBMAKE),1)
$(FUZZ_BUILD)/libconvoy.a $(FUZZ_SERVER_LIB) &: FORCE | fuzz-deps
	@$(MAKE) --no-print-directory FUZZ_SUBMAKE=1 BUILD=$(FUZZ_BUILD) CC=clang SAN=1 \
		CFLAGS="-O1 -g" EXTRA_CFLAGS=-fsanitize=fuzzer-no-link $(FUZZ_BUILD)/libconvoy.a \
		$(FUZZ_SERVER_LIB)
else
$(FUZZ_SERVER_LIB): $(FUZZ_SERVER:%=$(FUZZ_BUILD)/server/%.o)
	@rm -f $@
	ar rcs $@ $^
endif

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_BUILD)/libconvoy.a $(FUZZ_SERVER_LIB)
	clang -O1 -g -fsanitize=fuzzer,address,undefined -Iinclude -Iengine -Iserver $(PKG_CFLAGS) \
		$< $(FUZZ_SERVER_LIB) $(FUZZ_BUILD)/libconvoy.a $(PKG_LIBS) -o $@

fuzz: $(FUZZERS:%=$(FUZZ_BUILD)/fuzz_%)
	@set -e; for f in $(FUZZERS); do \
		mkdir -p $(FUZZ_BUILD)/corpus-$$f $(FUZZ_BUILD)/crash-$$f; \
		echo "== fuzz_$$f for $(FUZZ_SECONDS) s"; \
		if ! $(FUZZ_BUILD)/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 \
			-max_len=65536 -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/crash-$$f/ \
			$(FUZZ_BUILD)/corpus-$$f tests/fuzz/seeds/$$f 2>$(FUZZ_BUILD)/fuzz_$$f.log; then \
			cp $(FUZZ_BUILD)/crash-$$f/* tests/fuzz/regressions/$$f/ 2>/dev/null || true; \
			tail -40 $(FUZZ_BUILD)/fuzz_$$f.log; echo "fuzz_$$f found a problem" >&2; exit 1; \
		fi; \
		grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' $(FUZZ_BUILD)/fuzz_$$f.log; \
	done
