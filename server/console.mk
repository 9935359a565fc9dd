# server/console.mk - the web console (included by the top-level Makefile after server.mk).
#   server/console.html     the page, turned into $(BUILD)/gen/console_html.c (a static array)
#                           which server/console.c includes, so it is part of console.o
#   $(BUILD)/test_console   the browser test (tests/console/run.sh: headless Chromium driven
#                           by playwright-core), run by `make test` after the C tests
# `make deps` also installs playwright-core into tests/console/node_modules (git-ignored);
# Chromium itself is Debian's (DEB_TEST in the Makefile).

CONSOLE_GEN := $(BUILD)/gen/console_html.c
CONSOLE_NPM := tests/console/node_modules/.convoy-installed
CONSOLE_TEST := $(BUILD)/test_console

# od + sed (coreutils), so no extra package: bytes as 0x.. initializers, not NUL-terminated.
$(CONSOLE_GEN): server/console.html server/console.mk
	@mkdir -p $(dir $@)
	@{ echo '/* Generated from server/console.html by server/console.mk: do not edit. */'; \
	  echo 'static const unsigned char srv_console_html[] = {'; \
	  od -An -v -tx1 server/console.html | sed -e 's/\([0-9a-f][0-9a-f]\)/0x\1,/g' -e 's/^ *//'; \
	  echo '};'; \
	  echo 'static const unsigned int srv_console_html_len = sizeof srv_console_html;'; } > $@.tmp
	@mv -f $@.tmp $@

$(BUILD)/server/console.o: $(CONSOLE_GEN)
$(BUILD)/server/console.o: EXTRA_CFLAGS += -I$(BUILD)/gen

# playwright-core from npm (its own browser download cannot work here and is not used).
$(CONSOLE_NPM): tests/console/package.json
	@echo "installing playwright-core into tests/console/node_modules" >&2
	cd tests/console && npm install --no-audit --no-fund --ignore-scripts >&2
	@touch $@

.PHONY: console-deps
console-deps: $(CONSOLE_NPM)
deps: console-deps

$(CONSOLE_TEST): tests/console/run.sh server/console.mk $(CONSOLE_NPM) | $(CONVOYD) $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@printf '#!/bin/sh\nexec "%s/tests/console/run.sh" "$$@"\n' "$(CURDIR)" > $@
	@chmod +x $@

TEST_BINS += $(CONSOLE_TEST)
