# engine/onnx.mk - the ONNX importer (included by the top-level Makefile).
#   The protobuf-c code for Debian's onnx.proto is generated at build time into $(BUILD)/gen/
#   (never committed) and becomes part of libconvoy.a.
#   make build/test_onnx   the ONNX backend node-test runner (part of `make test`)
#   make models-zoo        full-size architectures exported from torchvision into models/zoo/

ONNX_PROTO ?= /usr/include/onnx/onnx.proto
ONNX_GEN := $(BUILD)/gen
ONNX_PB_OBJ := $(ONNX_GEN)/onnx.pb-c.o

ENGINE_OBJ += $(ONNX_PB_OBJ)
BASE_CFLAGS += -I$(ONNX_GEN)
PKG_LIBS += -lprotobuf-c

# $(LIB)'s prerequisites were expanded before this file was read: add the generated object.
$(LIB): $(ONNX_PB_OBJ)

$(ONNX_GEN)/onnx.pb-c.c $(ONNX_GEN)/onnx.pb-c.h &: $(ONNX_PROTO) | $(DEPS_STAMP)
	@mkdir -p $(ONNX_GEN)
	protoc-c --c_out=$(ONNX_GEN) --proto_path=$(dir $(ONNX_PROTO)) $(ONNX_PROTO)

# Generated code: not ours to warn about.
$(ONNX_PB_OBJ): $(ONNX_GEN)/onnx.pb-c.c $(ONNX_GEN)/onnx.pb-c.h
	$(CC) $(ALL_CFLAGS) -w -c $< -o $@

# Everything that includes the generated header waits for it.
ONNX_USERS := $(BUILD)/engine/onnx_import.o $(BUILD)/tests/onnx_conformance.o \
	$(BUILD)/tests/unit_zoo.o
$(ONNX_USERS): $(ONNX_GEN)/onnx.pb-c.h

ONNX_TEST := $(BUILD)/test_onnx
TEST_BINS += $(ONNX_TEST)

$(ONNX_TEST): $(BUILD)/tests/onnx_conformance.o $(LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $(BUILD)/tests/onnx_conformance.o $(LIB) $(PKG_LIBS)

.PHONY: models-zoo
models-zoo: deps-tools $(CLI)
	$(PYTHON) tools/export_models.py --out models/zoo --full --convoy $(CLI)

-include $(BUILD)/tests/onnx_conformance.d
