# little-key-value build. `make` builds build/little-key-value; see README for the rest.

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
SAN     ?=
PYTHON  ?= /usr/bin/python3
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

WARN    := -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Werror
CFLAGS  := -std=c11 -D_GNU_SOURCE $(OPT) -g -pthread $(WARN) $(SAN) \
           -Isrc -DLKV_VERSION='"$(VERSION)"' $(EXTRA_CFLAGS)
LDFLAGS := -pthread $(SAN) $(EXTRA_LDFLAGS)
MHD_LIBS := $(shell pkg-config --libs libmicrohttpd libcurl 2>/dev/null || echo -lmicrohttpd -lcurl)

LIB_SRC := $(filter-out src/main.c,$(shell find src -name '*.c' | sort))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BIN     := $(BUILD)/little-key-value
SIM_SRC := $(sort $(wildcard tests/sim/*.c))
SIM_BIN := $(BUILD)/tests/sim

# make sim runs SEEDS seeds from SIM_START (or SEED=X alone); make test runs
# SIM_SEEDS. Both split the seeds over SIM_JOBS processes.
SEEDS     ?= 2000
SIM_START ?= 1
SIM_SEEDS ?= 8000
SIM_JOBS  ?= 2
SIM_SAN_SEEDS ?= 2000
SIM_ARGS  ?=

.PHONY: all setup run test test-only test-san unit integration crash cluster-test cluster sim \
        sim-test sim-asan mutants sanitize tsan fuzz bench bench-compare bench-failover clean format torture

all: $(BIN)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/liblkv.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(BUILD)/obj/src/main.o $(BUILD)/liblkv.a
	$(CC) $(LDFLAGS) -o $@ $^ $(MHD_LIBS) -lm

# Unit tests link against the archive, so each pulls in only the modules it uses.
# UNIT_INC puts tests/unit/tsan first under TSan: Criterion 2.4.1 cannot start
# there (Snaipe/Criterion#274), so the same files run on a small sequential
# runner with the same API.
# Extra sources a unit test needs beyond the archive are listed as its
# prerequisites (the Raft tests drive the core over tests/sim/memstore.c).
$(BUILD)/tests/test_raft: tests/sim/memstore.c tests/unit/raft_fixture.h

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/liblkv.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(UNIT_INC) -Itests/unit -Itests $< $(filter tests/sim/%.c,$^) -o $@ $(LDFLAGS) $(BUILD)/liblkv.a -lcriterion $(MHD_LIBS) -lm

# The deterministic cluster simulator over the Raft core (tests/sim/README.md).
$(SIM_BIN): $(SIM_SRC) $(wildcard tests/sim/*.h) $(BUILD)/liblkv.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/sim $(SIM_SRC) -o $@ $(LDFLAGS) $(BUILD)/liblkv.a -lm

# LD_PRELOAD shim that makes selected file-system calls fail on demand.
$(BUILD)/tests/libfaultinject.so: tests/crash/faultinject.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror -fPIC -shared -o $@ $< -ldl

$(BUILD)/bench/fsync_probe: bench/fsync_probe.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 $(WARN) -o $@ $<

setup:
	@bash scripts/setup.sh

run: setup
	@$(MAKE) --no-print-directory all
	./$(BIN) --port 8080 --working-dir ./data

test: setup
	@$(MAKE) --no-print-directory test-only

test-only: unit sim-test integration crash cluster-test

# What the sanitizer builds run: everything but the real-process cluster
# tests (minutes of namespaces under a sanitizer add little there).
test-san: unit sim-test integration crash

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t --jobs 2; done

integration: $(BIN)
	LKV_BIN=$(abspath $(BIN)) $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

# Real processes in network namespaces (root; skipped with the reason otherwise).
cluster-test: $(BIN)
	LKV_BIN=$(abspath $(BIN)) $(PYTHON) -m pytest -q -p no:cacheprovider tests/cluster

# Breaks each Raft rule in turn (tests/unit/mutants) and checks its unit test fails.
mutants:
	$(PYTHON) tests/unit/mutants/raft_mutants.py

# Three nodes on 127.0.0.1:8081-8083, data in ./data-cluster/n<i>; Ctrl-C stops them.
cluster: setup
	@$(MAKE) --no-print-directory all
	@bash scripts/local-cluster.sh

sim: $(SIM_BIN)
	$(SIM_BIN) $(if $(SEED),--seed $(SEED),--seeds $(SEEDS) --start $(SIM_START) --jobs $(SIM_JOBS)) \
	  $(SIM_ARGS)

sim-test: $(SIM_BIN)
	$(SIM_BIN) --seeds $(SIM_SEEDS) --jobs $(SIM_JOBS)

crash: $(BIN) $(BUILD)/tests/libfaultinject.so
	LKV_BIN=$(abspath $(BIN)) LKV_FAULT_LIB=$(abspath $(BUILD)/tests/libfaultinject.so) \
	  $(PYTHON) -m pytest -q -p no:cacheprovider tests/crash

sanitize: setup
	@LKV_PRELOAD_FIRST=$$($(CC) -print-file-name=libasan.so) \
	  $(MAKE) --no-print-directory BUILD=build/asan OPT=-O1 SIM_SEEDS=$(SIM_SAN_SEEDS) \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
	  test-san

# Only the simulator, under ASan+UBSan (LeakSanitizer checks every run frees all).
sim-asan:
	@$(MAKE) --no-print-directory BUILD=build/asan OPT=-O1 SIM_SEEDS=$(SIM_SAN_SEEDS) \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
	  sim-test

tsan: setup
	@LKV_PRELOAD_FIRST=$$($(CC) -print-file-name=libtsan.so) \
	  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 atexit_sleep_ms=0" $(MAKE) --no-print-directory \
	  BUILD=build/tsan OPT=-O1 SAN="-fsanitize=thread" UNIT_INC=-Itests/unit/tsan \
	  SIM_SEEDS=$(SIM_SAN_SEEDS) test-san

fuzz:
	@bash scripts/setup.sh --with-fuzz
	@bash tests/fuzz/run.sh

bench:
	@bash scripts/setup.sh --with-bench
	@$(MAKE) --no-print-directory all
	@bash bench/run.sh
	@bash bench/run.sh --compare

# kill -9 of a 3-node cluster's leader, BENCH_KILLS times (root: namespaces).
bench-failover: $(BIN)
	LKV_BIN=$(abspath $(BIN)) $(PYTHON) bench/failover.py

# This build against BENCH_BASE (a commit) and against itself, single node.
bench-compare:
	@bash scripts/setup.sh --with-bench
	@$(MAKE) --no-print-directory all
	@bash bench/run.sh --compare

torture: $(BIN)
	LKV_BIN=$(abspath $(BIN)) $(PYTHON) tests/crash/torture.py $(TORTURE_ARGS)

format:
	clang-format -i $$(find src tests -name '*.[ch]')

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
