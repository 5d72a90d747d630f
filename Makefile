# pmesh build. Out-of-tree: everything goes to $(BUILD). See README.md.
#   make                 agent, CLI, library, pkg-config file
#   make deps            install the Debian packages the build and tests need
#   make check           build and run every test (SANITIZE=address,undefined for ASan+UBSan)
#   make deploy-check    Kubernetes manifests, image recipe, DaemonSet rehearsal (offline; part of check)
#   make image           build deploy/Containerfile with podman, buildah or docker
#   make demo            run the pipeline demo
#   make fuzz            run each fuzz target for FUZZ_SECONDS
#   make install PREFIX=/usr/local

PREFIX    ?= /usr/local
SANITIZE  ?=
ifeq ($(SANITIZE),)
BUILD     ?= build
else
BUILD     ?= build/san
endif
CC        ?= cc
PKGS      := libzmq libczmq libprotobuf-c yaml-0.1 jansson libcurl libmicrohttpd libsodium
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null)

CFLAGS    ?= -O2 -g
CFLAGS    += -std=gnu11 -Wall -Wextra -Werror -fPIC -D_GNU_SOURCE
CPPFLAGS  += -Inode -Imesh -I$(BUILD)/gen $(PKG_CFLAGS) -MMD -MP
LDLIBS    += $(PKG_LIBS) -lpthread -lm
ifneq ($(SANITIZE),)
CFLAGS    += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS   += -fsanitize=$(SANITIZE)
endif

GEN_C     := $(BUILD)/gen/pmesh.pb-c.c
GEN_H     := $(BUILD)/gen/pmesh.pb-c.h
# libpmesh: what a function links against.
LIB_SRC   := node/client.c node/wire.c node/err.c node/dur.c node/clock.c
# The agent: every other module of node/ and mesh/ (mains excluded).
MAINS     := node/pmeshd.c node/cli.c
AGENT_SRC := $(filter-out $(LIB_SRC) $(MAINS),$(wildcard node/*.c mesh/*.c))
UNIT_SRC  := $(wildcard tests/unit/test_*.c)

obj        = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
LIB_OBJ   := $(call obj,$(LIB_SRC)) $(BUILD)/obj/gen/pmesh.pb-c.o
AGENT_OBJ := $(call obj,$(AGENT_SRC))
UNIT_BIN  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

# Benchmark and test helper programs: tests/bench/NAME.c -> $(BUILD)/bin/NAME
EXTRA_BIN := $(patsubst tests/bench/%.c,$(BUILD)/bin/%,$(filter-out tests/bench/pmesh_bench.c \
               tests/bench/zmq_rtt.c,$(wildcard tests/bench/*.c)))

all: $(BUILD)/bin/pmeshd $(BUILD)/bin/pmesh $(BUILD)/lib/libpmesh.a $(BUILD)/lib/libpmesh.so \
     $(BUILD)/lib/pkgconfig/pmesh.pc $(BUILD)/bin/pmesh-bench $(BUILD)/bin/zmq-rtt $(EXTRA_BIN) \
     $(BUILD)/bin/pmesh-sim

$(GEN_C) $(GEN_H): proto/pmesh.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --proto_path=proto --c_out=$(BUILD)/gen $<

$(BUILD)/obj/gen/pmesh.pb-c.o: $(GEN_C)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Wno-unused-parameter -c $< -o $@

$(BUILD)/obj/%.o: %.c | $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/lib/libpmesh.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# Exports only what pmesh.h declares (node/libpmesh.map).
$(BUILD)/lib/libpmesh.so: $(LIB_OBJ) node/libpmesh.map
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -Wl,-soname,libpmesh.so.0 -Wl,--version-script=node/libpmesh.map \
	    -o $@ $(LIB_OBJ) $(LDLIBS)

$(BUILD)/lib/agent.a: $(AGENT_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/lib/pkgconfig/pmesh.pc: node/pmesh.pc.in
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(shell sed -n 's/^#define PMESH_VERSION "\(.*\)"/\1/p' node/pmesh.h)|g' $< > $@

$(BUILD)/bin/pmeshd: $(call obj,node/pmeshd.c) $(BUILD)/lib/agent.a $(BUILD)/lib/libpmesh.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The CLI talks to the agent through libpmesh only (space force-owner too:
# the agent makes the store change): it does not link the agent.
$(BUILD)/bin/pmesh: $(call obj,node/cli.c node/pjson.c) $(BUILD)/lib/libpmesh.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/%: $(BUILD)/obj/tests/bench/%.o $(BUILD)/lib/agent.a $(BUILD)/lib/libpmesh.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/tests/bench/pmesh-bench.o: tests/bench/pmesh_bench.c | $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@
$(BUILD)/obj/tests/bench/zmq-rtt.o: tests/bench/zmq_rtt.c | $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

# The deterministic simulator (tests/sim, issue 14).
$(BUILD)/bin/pmesh-sim: $(BUILD)/obj/tests/sim/sim.o $(BUILD)/lib/agent.a $(BUILD)/lib/libpmesh.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(BUILD)/lib/agent.a $(BUILD)/lib/libpmesh.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CMOCKA_LIBS)

# --- fuzzing (clang + libFuzzer); never part of the sanitizer-less product build
FUZZ_SECONDS ?= 60
FUZZ_BUILD   := build/fuzz
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SRC      = $(LIB_SRC) $(AGENT_SRC) $(GEN_C)

$(FUZZ_BUILD)/%: tests/fuzz/%.c $(FUZZ_SRC) $(GEN_H)
	@mkdir -p $(dir $@)
	clang -std=gnu11 -g -O1 -D_GNU_SOURCE -DPM_FUZZING -Inode -Imesh -I$(BUILD)/gen $(PKG_CFLAGS) \
	    -fsanitize=fuzzer,address,undefined -o $@ $< $(FUZZ_SRC) $(PKG_LIBS) -lpthread -lm

fuzz-build: $(FUZZ_TARGETS)
fuzz: $(FUZZ_TARGETS)
	@for t in $(FUZZ_TARGETS); do n=$$(basename $$t); mkdir -p $(FUZZ_BUILD)/corpus/$$n; \
	  cp -n tests/fuzz/corpus/$$n/* $(FUZZ_BUILD)/corpus/$$n/ 2>/dev/null; \
	  echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
	  $$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -print_final_stats=1 $(FUZZ_BUILD)/corpus/$$n \
	      > $(FUZZ_BUILD)/$$n.log 2>&1 || { tail -40 $(FUZZ_BUILD)/$$n.log; exit 1; }; \
	  grep -E 'stat::number_of_executed_units' $(FUZZ_BUILD)/$$n.log; done

# --- tests
unit: check-seams $(UNIT_BIN)

# No agent module reads the clock, randomness, names or the disk past its seam.
check-seams:
	scripts/check-seams

check: deps-if-missing deploy-check
	$(MAKE) all unit fuzz-build
	BUILD=$(BUILD) SANITIZE=$(SANITIZE) scripts/run-tests

deploy-check: deps-if-missing
	$(MAKE) $(BUILD)/bin/pmeshd $(BUILD)/bin/pmesh $(BUILD)/lib/libpmesh.a
	BUILD=$(BUILD) SANITIZE=$(SANITIZE) tests/deploy/run

image:
	deploy/build-image

deps:
	scripts/deps --install

deps-if-missing:
	scripts/deps

demo: deps-if-missing
	$(MAKE) all
	BUILD=$(BUILD) scripts/demo

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(BUILD)/bin/pmeshd $(BUILD)/bin/pmesh $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(BUILD)/lib/libpmesh.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/lib/libpmesh.so $(DESTDIR)$(PREFIX)/lib/libpmesh.so.0
	ln -sf libpmesh.so.0 $(DESTDIR)$(PREFIX)/lib/libpmesh.so
	install -m 644 node/pmesh.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|^prefix=.*|prefix=$(PREFIX)|' $(BUILD)/lib/pkgconfig/pmesh.pc \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/pmesh.pc

clean:
	rm -rf build

.PHONY: all unit check-seams check deps deps-if-missing demo install clean fuzz fuzz-build deploy-check image
.SECONDARY:
-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
