# tests/faults.mk - build/test_faults: allocation and file fault injection for the model
# loaders and the registry (tests/faults.c), part of make test. Every allocation the engine
# and the registry make goes through the test's wrappers (-Wl,--wrap).

FAULTS_WRAP := malloc calloc realloc posix_memalign strdup free read
FAULTS_SERVER := registry batcher metrics log sidecar config
TEST_FAULTS := $(BUILD)/test_faults

$(BUILD)/tests/faults.o: EXTRA_CFLAGS += -Iserver $(shell pkg-config --cflags check 2>/dev/null)

$(TEST_FAULTS): $(BUILD)/tests/faults.o $(FAULTS_SERVER:%=$(BUILD)/server/%.o) $(LIB)
	$(CC) $(LDFLAGS_ALL) $(FAULTS_WRAP:%=-Wl,--wrap=%) -o $@ $^ $(PKG_LIBS) $(SERVER_LIBS) \
		$(shell pkg-config --libs check 2>/dev/null)

TEST_BINS += $(TEST_FAULTS)
-include $(BUILD)/tests/faults.d
