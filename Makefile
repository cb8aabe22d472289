# landropic: the two commands a newcomer needs are `make demo` and `make test`.
# Everything else here is for developers. CMake does the building; this file only
# wraps it so nobody has to type cmake.

BUILD      ?= build
ASAN_BUILD ?= build-asan
SAN_LOGS   ?= $(CURDIR)/$(ASAN_BUILD)/sanitizer-logs
FUZZ_BUILD ?= build-fuzz
COV_BUILD  ?= build-cov
JOBS       ?= $(shell nproc)
# CI sets WERROR=1 so warnings fail the build.
WERROR     ?= 0
PYTEST     ?= /usr/bin/python3 -m pytest
# Integration tests mostly wait on their daemons, so several run at once
# (pytest-xdist workers: one more than the CPUs, at most 8; 0 runs them in
# one process, one after another).
TEST_JOBS  ?= $(shell n=$$(( $(JOBS) + 1 )); [ $$n -gt 8 ] && n=8; echo $$n)
FUZZ_SECONDS ?= 20
FUZZ_TARGETS := $(basename $(notdir $(wildcard fuzz/fuzz_*.c)))

CMAKE_FLAGS = -DLR_WERROR=$(if $(filter 1,$(WERROR)),ON,OFF)

.PHONY: all build deps test unit integration test-sanitize demo coverage fuzz format format-check lint clean

all: build

deps:
	@scripts/deps.sh

$(BUILD)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null

build: $(BUILD)/Makefile
	@cmake $(CMAKE_FLAGS) $(BUILD) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# Unit tests (cmocka under ctest, plus fuzz-corpus replays) then integration tests (pytest).
test: deps build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	LANDROPIC_BIN=$(CURDIR)/$(BUILD)/landropic LANDROPIC_BUILD=$(CURDIR)/$(BUILD) \
	  $(PYTEST) -q -n $(TEST_JOBS) tests/integration

# The same tests, built with AddressSanitizer + UndefinedBehaviorSanitizer.
test-sanitize: deps
	cmake -S . -B $(ASAN_BUILD) $(CMAKE_FLAGS) -DLR_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 ctest --output-on-failure -j $(JOBS)
	rm -rf $(SAN_LOGS) && mkdir -p $(SAN_LOGS)
	@# A failed test runs once more (pytest-rerunfailures): the sanitizers make
	@# every daemon several times slower, which stretches the tests' timing
	@# windows on a shared 2-core machine. Each rerun and its first failure are
	@# printed at the end; a sanitizer report fails the run even if the rerun
	@# passes (it stays in SAN_LOGS). `make test` never reruns.
	ASAN_OPTIONS=detect_leaks=1:log_path=$(SAN_LOGS)/asan \
	  UBSAN_OPTIONS=print_stacktrace=1:log_path=$(SAN_LOGS)/ubsan \
	  LANDROPIC_SAN_LOGS=$(SAN_LOGS) \
	  LANDROPIC_BIN=$(CURDIR)/$(ASAN_BUILD)/landropic \
	  LANDROPIC_BUILD=$(CURDIR)/$(ASAN_BUILD) $(PYTEST) -q -n $(TEST_JOBS) --reruns 1 -rR \
	  tests/integration
	@# Detached daemons have no terminal: their reports (leaks at exit too)
	@# land in files, and any file fails the run.
	@if [ -n "$$(ls -A $(SAN_LOGS))" ]; then \
	  echo "sanitizer reports from processes the integration tests ran:"; \
	  head -n 60 $(SAN_LOGS)/*; exit 1; fi

demo: deps build
	@scripts/demo.sh $(CURDIR)/$(BUILD)/landropic

coverage: deps
	cmake -S . -B $(COV_BUILD) -DLR_COVERAGE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build $(COV_BUILD) -j $(JOBS)
	find $(COV_BUILD) -name '*.gcda' -delete
	cd $(COV_BUILD) && ctest -j $(JOBS) >/dev/null
	LANDROPIC_BIN=$(CURDIR)/$(COV_BUILD)/landropic LANDROPIC_BUILD=$(CURDIR)/$(COV_BUILD) \
	  $(PYTEST) -q tests/integration >/dev/null
	gcovr -r . --object-directory $(COV_BUILD) --filter src/ --gcov-ignore-parse-errors --print-summary | tail -n 3

# Each libFuzzer target runs for FUZZ_SECONDS (bounded), starting from its seed corpus.
fuzz: deps
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DLR_FUZZ=ON -DLR_FAILPOINTS=OFF >/dev/null
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target $(FUZZ_TARGETS)
	@set -e; for t in $(addprefix $(FUZZ_BUILD)/,$(FUZZ_TARGETS)); do \
	  n=$$(basename $$t); c=fuzz/corpus/$${n#fuzz_}; mkdir -p $(FUZZ_BUILD)/corpus-$$n; \
	  echo "== $$n ($(FUZZ_SECONDS)s)"; \
	  if ! $$t -max_total_time=$(FUZZ_SECONDS) $(FUZZ_BUILD)/corpus-$$n $$c \
	       > $(FUZZ_BUILD)/$$n.log 2>&1; then \
	    tail -n 40 $(FUZZ_BUILD)/$$n.log; echo "$$n FAILED (log: $(FUZZ_BUILD)/$$n.log)"; exit 1; \
	  fi; tail -n 1 $(FUZZ_BUILD)/$$n.log; \
	done

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

# Banned string functions (curl's checksrc idea): all of them have a bounded replacement here.
lint:
	@! git grep -nE '(^|[^_a-zA-Z0-9.>])(sprintf|strcpy|strcat|strncpy|gets|atoi|strtok) *\(' -- '*.c' '*.h' \
	  || (echo "banned function used (see Makefile lint)"; exit 1)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(COV_BUILD)
