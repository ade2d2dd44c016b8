# cogent: the top-level driver.  CMake does the building; this file names
# the few things people do: build, test, demo, bench, install.
#
#   make          release build in build/
#   make test     install missing Debian packages (when root), check style and
#                 static analysis, then run every test in a release build and
#                 under ASan+UBSan (both pollers), the threaded ones under
#                 TSan, and the switch/fiber/generator/hub tests cross-built
#                 for aarch64 under qemu-user
#   make fuzz     the API fuzzer for FUZZ_SECONDS (600) instead of make test's 2 s
#   make demo     the classic demos, with a short summary
#   make bench    benchmarks against the peers; writes bench/out/results.json
#   make install  PREFIX=/usr/local by default

MAKEFLAGS += --no-print-directory
PREFIX ?= /usr/local
JOBS ?= $(shell nproc)
CMAKE ?= cmake
CTEST ?= ctest --output-on-failure -j$(JOBS)

.PHONY: all release test test-valgrind test-asan test-tsan test-release test-aarch64 deps demo bench install clean format format-check lint fuzz

all: release

release:
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	$(CMAKE) --build build -j$(JOBS)

deps:
	@scripts/deps.sh test

test: deps lint format-check test-release test-valgrind test-asan test-tsan test-aarch64
	@echo "make test: all suites passed"

test-release: release
	cd build && $(CTEST)

# valgrind follows the switches through VALGRIND_STACK_REGISTER: no error,
# no definite leak, on the single-threaded suites.
VALGRIND_TESTS = switch fiber gen coro group deadlock lock sync queue stress io
VALGRIND_COMPACT_TESTS = coro lock queue io compact
# HTTP and TLS (libcurl, OpenSSL) with every stack in canary mode: valgrind
# keeps a fixed table of memory segments, and 10k guarded stacks (one
# mapping each) overflow it.
VALGRIND_HTTP_TESTS = http tls
test-valgrind: release
	@for t in $(VALGRIND_TESTS); do \
	  valgrind -q --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite \
	    build/test_$$t >/dev/null 2>build/valgrind_$$t.log || { cat build/valgrind_$$t.log; exit 1; }; \
	  echo "valgrind: test_$$t clean"; done
	@for t in $(VALGRIND_COMPACT_TESTS); do \
	  COGENT_COMPACT=1 valgrind -q --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite \
	    build/test_$$t >/dev/null 2>build/valgrind_$$t.log || { cat build/valgrind_$$t.log; exit 1; }; \
	  echo "valgrind: test_$$t clean with every coroutine compact"; done
	@for t in $(VALGRIND_HTTP_TESTS); do \
	  COGENT_STACK_GUARD=never valgrind -q --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite \
	    build/test_$$t >/dev/null 2>build/valgrind_$$t.log || { cat build/valgrind_$$t.log; exit 1; }; \
	  echo "valgrind: test_$$t clean"; done

test-asan:
	$(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
	  -DCOGENT_SANITIZE=address -DCOGENT_EXAMPLES=OFF >/dev/null
	$(CMAKE) --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(CTEST)

# die_after_fork=0: the fork tests start helper threads again in the
# child of a multi-threaded process, which TSan refuses by default.
# -LE compact: TSan cannot follow fibers across fork (a fiber of the
# parent's resumed in a child finds its shadow stack gone), and every
# compact variant forks children for its death tests; test_compact runs
# compact coroutines on several threads under TSan instead.
test-tsan:
	$(CMAKE) -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
	  -DCOGENT_SANITIZE=thread -DCOGENT_EXAMPLES=OFF >/dev/null
	$(CMAKE) --build build-tsan -j$(JOBS)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1:die_after_fork=0 $(CTEST) -L threads -LE compact

test-aarch64:
	@if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then \
	  echo "test-aarch64: cross compiler or qemu-user missing (scripts/deps.sh installs them as root)"; exit 1; fi
	$(CMAKE) -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64.cmake -DCMAKE_BUILD_TYPE=Release \
	  -DCOGENT_EXAMPLES=OFF -DCOGENT_VALGRIND=OFF >/dev/null
	$(CMAKE) --build build-aarch64 -j$(JOBS)
	cd build-aarch64 && $(CTEST) -L arch

# The API fuzzer (tests/test_fuzz.c) for longer, in the release build;
# COGENT_FUZZ_SEED=<n> replays a run.  The sanitizer builds' test_fuzz
# (build-asan, build-tsan) take the same variables.
FUZZ_SECONDS ?= 600
fuzz: release
	COGENT_FUZZ_SECONDS=$(FUZZ_SECONDS) build/test_fuzz test_fuzz

demo: release
	@scripts/demo.sh build

bench:
	@scripts/deps.sh bench
	$(CMAKE) -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCOGENT_BENCH=ON -DCOGENT_TESTS=OFF \
	  -DCOGENT_EXAMPLES=OFF -DCOGENT_VALGRIND=OFF >/dev/null
	$(CMAKE) --build build-bench -j$(JOBS)
	bench/run.sh build-bench

install: release
	$(CMAKE) --install build

SOURCES = include/*.h src/*.c src/*.h src/arch/*.h src/patch/*.c tests/*.c tests/*.h tests/header/*.c tests/header/*.h \
  tests/header/*.cc examples/*.c bench/*.c bench/peers/*.c

format:
	clang-format -i $(SOURCES)

format-check:
	clang-format --dry-run -Werror $(SOURCES)

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability --std=c11 \
	  --suppress=missingIncludeSystem -Iinclude -Isrc src
	clang-tidy --quiet src/*.c -- -Iinclude -Isrc -D_GNU_SOURCE -std=gnu11 -DCO_VALGRIND=1

clean:
	rm -rf build build-asan build-tsan build-aarch64 build-bench bench/out
