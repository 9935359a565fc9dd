# server/server.mk - convoyd, its tests and its targets (included by the top-level Makefile).
#   make build/convoyd     the daemon
#   make run               build it and serve models/ on 127.0.0.1:8080
#   make bench-server      load-test it with wrk at concurrency 1, 8 and 64
#   make soak [SOAK_SECONDS=600]   hostile + valid traffic with model reloads for that long

SERVER_SRC := $(sort $(wildcard server/*.c))
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o)
SERVER_LIBS = $(shell pkg-config --libs libmicrohttpd jansson libsystemd 2>/dev/null)
CONVOYD := $(BUILD)/convoyd

TEST_SERVER_SRC := $(sort $(wildcard tests/server_*.c))
TEST_SERVER_OBJ := $(TEST_SERVER_SRC:%.c=$(BUILD)/%.o)
TEST_SERVER := $(BUILD)/test_server

all: $(CONVOYD)

$(CONVOYD): $(SERVER_OBJ) $(LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $(SERVER_OBJ) $(LIB) $(PKG_LIBS) $(SERVER_LIBS)

# The server modules without HTTP that tests/server_fuzzregress.c calls directly (the same
# ones the fuzz harnesses link, tests/fuzz/fuzz.mk).
TEST_SERVER_MODS := $(addprefix $(BUILD)/server/,b64.o body.o decode.o multipart.o v2_parse.o)

$(TEST_SERVER_OBJ): EXTRA_CFLAGS += -Iserver $(shell pkg-config --cflags check libcurl 2>/dev/null)

# The tests start the real daemon, so they need it built.
$(TEST_SERVER): $(TEST_SERVER_OBJ) $(TEST_SERVER_MODS) $(LIB) | $(CONVOYD)
	$(CC) $(LDFLAGS_ALL) -o $@ $(TEST_SERVER_OBJ) $(TEST_SERVER_MODS) $(LIB) $(PKG_LIBS) \
		$(shell pkg-config --libs check libcurl jansson 2>/dev/null)

TEST_BINS += $(TEST_SERVER)

.PHONY: run bench-server soak
run: $(CONVOYD)
	exec $(CONVOYD) --models models --listen 127.0.0.1:8080

bench-server: $(CONVOYD) $(CLI)
	server/bench-server.sh $(CONVOYD) $(CLI)

# The soak of tests/server_hostile.c (test_soak): bounded by SOAK_SECONDS, prints its tally.
SOAK_SECONDS ?= 600
soak: $(CONVOYD) $(TEST_SERVER)
	CONVOY_BUILD=$(BUILD) CONVOY_SOAK_SECONDS=$(SOAK_SECONDS) CK_RUN_SUITE=hardening \
		CK_RUN_CASE=soak $(TEST_SERVER)

-include $(SERVER_OBJ:.o=.d) $(TEST_SERVER_OBJ:.o=.d)
