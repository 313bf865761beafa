# csock - a Lua 5.4 networking runtime.  Overridable variables first (lua-cjson style).
PREFIX     ?= /usr/local
DESTDIR    ?=
LUA_VERSION = 5.4
LUA        ?= lua$(LUA_VERSION)
BUSTED     ?= $(LUA) $(shell command -v busted || echo /usr/bin/busted)
BUSTED_ARGS ?=
CC         ?= cc
CFLAGS     ?= -O2
# Link-time optimisation: inlines the small helpers one file calls in another (buf_len,
# sock_check, loop_ready...), ~280 instructions per request off a short connection.
# LTO= builds without it.
LTO        ?= -flto=auto
WARN       ?= -Wall -Wextra -Werror
LIBFLAG    ?= -shared

ifneq ($(LUA_INCDIR),)
LUA_CFLAGS ?= -I$(LUA_INCDIR)
else
LUA_CFLAGS ?= $(shell pkg-config --cflags lua$(LUA_VERSION) 2>/dev/null || echo -I/usr/include/lua$(LUA_VERSION))
endif
ifneq ($(LUA_LIBDIR),)
LUA_LIBS   ?= -L$(LUA_LIBDIR) -llua$(LUA_VERSION)
else
LUA_LIBS   ?= $(shell pkg-config --libs lua$(LUA_VERSION) 2>/dev/null || echo -llua$(LUA_VERSION))
endif

# OpenSSL 3 (libssl-dev); a rockspec passes OPENSSL_INCDIR/OPENSSL_LIBDIR
ifneq ($(OPENSSL_INCDIR),)
SSL_CFLAGS ?= -I$(OPENSSL_INCDIR)
SSL_LIBS   ?= -L$(OPENSSL_LIBDIR) -lssl -lcrypto
else
SSL_CFLAGS ?= $(shell pkg-config --cflags openssl 2>/dev/null)
SSL_LIBS   ?= $(shell pkg-config --libs openssl 2>/dev/null || echo -lssl -lcrypto)
endif

LUADIR     ?= $(PREFIX)/share/lua/$(LUA_VERSION)
LIBDIR     ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man/man1

CORE_SRC = src/csock.c src/check.c src/socket.c src/stream.c src/io.c src/read.c src/addr.c src/opt.c src/buf.c src/loop.c src/task.c src/embed.c src/cond.c src/coro.c src/resolve.c src/backend_epoll.c src/workers.c src/signal.c src/systemd.c src/tls.c src/http.c src/ready.c src/ws.c src/sendfile.c src/compat.c src/cork.c
HOST_SRC = src/main.c src/alloc.c
HDRS     = $(wildcard src/*.h)
ALL_CFLAGS = $(CFLAGS) $(LTO) $(WARN) -fPIC -pthread -std=gnu11 -D_GNU_SOURCE $(LUA_CFLAGS) $(SSL_CFLAGS)

.PHONY: all test asan valgrind install uninstall clean bench bench-redis deps run

# From the repository root, plain lua5.4 finds the in-place build on its default paths
# (./?.lua, ./?/init.lua, ./?.so): csock/ holds core.so and links to the modules in lua/csock/.
INPLACE = $(patsubst lua/csock/%,csock/%,$(wildcard lua/csock/*.lua lua/csock/socket))
all: csock/core.so bin/csock $(INPLACE)

csock/%: lua/csock/%
	@mkdir -p csock
	ln -sfn ../lua/csock/$* $@

csock/core.so: $(CORE_SRC) $(HDRS)
	@mkdir -p csock
	$(CC) $(ALL_CFLAGS) $(LIBFLAG) -o $@ $(CORE_SRC) $(LDFLAGS) $(SSL_LIBS)

# The host links the core statically and preloads it as csock.core.
LUA_MODULES = $(shell find lua/csock -name '*.lua')
build/init_lua.h: $(LUA_MODULES) tools/embed_lua.sh
	@mkdir -p build
	sh tools/embed_lua.sh > $@

bin/csock: $(HOST_SRC) $(CORE_SRC) $(HDRS) build/init_lua.h
	@mkdir -p bin
	$(CC) $(ALL_CFLAGS) -Ibuild -o $@ $(HOST_SRC) $(CORE_SRC) $(LDFLAGS) $(LUA_LIBS) $(SSL_LIBS) -lm -Wl,-E

deps:
	@sh tools/deps.sh

# The README's first command: set up, build, and show a server and a client talking.
run: deps all
	@sh tools/demo.sh

# 1,000 concurrent clients need more descriptors than a 1024 soft limit
RAISE_NOFILE = ulimit -n 8192 2>/dev/null || ulimit -n $$(ulimit -Hn) 2>/dev/null || true;

test: deps all
	$(RAISE_NOFILE) $(BUSTED) $(BUSTED_ARGS)

# The specs against an ASan+UBSan build of the core and host.  lua5.4 itself
# is not instrumented, so the sanitizer runtimes are preloaded.
ASAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
ASAN_RT = $(shell $(CC) -print-file-name=libasan.so) $(shell $(CC) -print-file-name=libubsan.so)
asan: deps asan-build
	$(RAISE_NOFILE) $(ASAN_ENV) $(BUSTED) --cpath='./build-asan/?.so' $(BUSTED_ARGS)

# The specs under valgrind: fail on memory errors and on definite leaks.
valgrind: deps all
	$(RAISE_NOFILE) CSOCK_SLOW=1 valgrind -q --error-exitcode=1 --leak-check=full --show-leak-kinds=definite \
	  --errors-for-leak-kinds=definite --suppressions=$(CURDIR)/tools/valgrind.supp \
	  $(BUSTED) $(BUSTED_ARGS)

install: all install-man
	install -d $(DESTDIR)$(LIBDIR)/csock $(DESTDIR)$(LUADIR)/csock $(DESTDIR)$(LUADIR)/csock/socket $(DESTDIR)$(BINDIR)
	install -m 755 csock/core.so $(DESTDIR)$(LIBDIR)/csock/core.so
	install -m 644 lua/csock/*.lua $(DESTDIR)$(LUADIR)/csock/
	install -m 644 lua/csock/socket/*.lua $(DESTDIR)$(LUADIR)/csock/socket/
	install -m 755 bin/csock $(DESTDIR)$(BINDIR)/csock

uninstall: uninstall-man
	rm -f $(DESTDIR)$(LIBDIR)/csock/core.so $(DESTDIR)$(BINDIR)/csock
	rm -rf $(DESTDIR)$(LUADIR)/csock

clean:
	rm -rf csock bin build build-asan build-fuzz

# Benchmark csock beside its peers (bench/README.md); e.g. make bench BENCH_ARGS="--quick"
bench: all
	bash bench/run.sh $(BENCH_ARGS)

# The client-side row (issue 19): redis-lua GETs from LuaSocket, copas, csock.socket and
# native csock; e.g. make bench-redis BENCH_REDIS_ARGS="100000 50"
bench-redis: all
	bash bench/redis_clients.sh $(BENCH_REDIS_ARGS)

# Reliability stress cases (issue 6): leaks, EMFILE, slow and broken peers, loopback only.
# e.g. make stress STRESS_CYCLES=20000
stress: all
	STRESS_CYCLES=$(STRESS_CYCLES) sh stress/run.sh
STRESS_CYCLES ?= 100000

# ---------------------------------------------------------------- lint, dist, man page
# `make lint`: luacheck (.luacheckrc), cppcheck, clang-tidy (.clang-tidy) and a
# clang-format check (.clang-format).  Every part runs; it fails if any failed.
LUACHECK     ?= luacheck
CPPCHECK     ?= cppcheck
CLANG_TIDY   ?= clang-tidy
CLANG_FORMAT ?= clang-format
LINT_LUA     = $(wildcard lua spec examples bench stress)
LINT_C       = $(wildcard src/*.c)
LINT_H       = $(wildcard src/*.h)
LINT_DEPS    ?= lua-check cppcheck clang-tidy clang-format
# cppcheck reads no Lua headers (their configuration checks fail under it);
# constParameter would ask for `const lua_State *L`, which the Lua API never takes.
CPPCHECK_FLAGS ?= --quiet --enable=warning,style,performance,portability --std=c11 \
  -D_GNU_SOURCE -Isrc -Ibuild --inline-suppr --suppress=missingIncludeSystem \
  --suppress=constParameter --error-exitcode=1

.PHONY: lint lint-lua lint-cppcheck lint-tidy lint-format lint-deps dist install-man uninstall-man

lint:
	@CSOCK_DEPS="$(LINT_DEPS)" sh tools/deps.sh
	@st=0; \
	for t in lint-lua lint-cppcheck lint-tidy lint-format lint-deps; do \
	  echo "== $$t"; $(MAKE) --no-print-directory $$t || st=1; \
	done; \
	if [ $$st -ne 0 ]; then echo "lint: FAILED (see above)"; else echo "lint: clean"; fi; \
	exit $$st

lint-lua:
	$(LUACHECK) --no-color -q $(LINT_LUA)

lint-cppcheck:
	$(CPPCHECK) $(CPPCHECK_FLAGS) $(LINT_C)

lint-tidy: build/init_lua.h
	$(CLANG_TIDY) --quiet $(LINT_C) -- -std=gnu11 -D_GNU_SOURCE $(LUA_CFLAGS) -Ibuild

lint-format:
	$(CLANG_FORMAT) --style=file --dry-run --Werror $(LINT_C) $(LINT_H)

# which src/ file calls which; fails on a cycle (README "Layout")
lint-deps: build/init_lua.h
	sh tools/depgraph.sh $(LUA_CFLAGS)

# `make dist`: the release tarball csock-X.Y.Z.tar.gz of HEAD, laid out as
# GitHub's archive of the tag vX.Y.Z (csock-X.Y.Z/...), which
# csock-X.Y.Z-1.rockspec points to.  The version comes from src/csock.h.
DIST_VERSION ?= $(shell sed -n 's/^\#define CSOCK_VERSION "csock \(.*\)"/\1/p' src/csock.h)
dist:
	git archive --format=tar.gz --prefix=csock-$(DIST_VERSION)/ -o csock-$(DIST_VERSION).tar.gz HEAD
	@echo "wrote csock-$(DIST_VERSION).tar.gz"

install-man:
	install -d $(DESTDIR)$(MANDIR)
	install -m 644 csock.1 $(DESTDIR)$(MANDIR)/csock.1

uninstall-man:
	rm -f $(DESTDIR)$(MANDIR)/csock.1

# libFuzzer harnesses (issues 6, 18) over the read buffer and formats, over
# address parsing and over the TLS transport, built by clang with ASan and
# UBSan and without the resolver; `make fuzz` runs them for FUZZ_SECONDS in
# all (fuzz/run.sh).
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_SRC      = $(filter-out $(HOST_SRC),$(wildcard src/*.c))
FUZZ_CFLAGS  ?= -g -O1 -fno-omit-frame-pointer
FUZZ_ALL_CFLAGS = $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -pthread -std=gnu11 -D_GNU_SOURCE -DCSOCK_NO_RESOLVER $(LUA_CFLAGS) $(SSL_CFLAGS) -Isrc
# fuzz_addr wraps the calls that would reach the network or the file system
FUZZ_ADDR_WRAP = -Wl,--wrap=bind,--wrap=connect,--wrap=sendto,--wrap=getaddrinfo

.PHONY: stress fuzz

build-fuzz/fuzz_read: fuzz/fuzz_read.c $(FUZZ_SRC) $(HDRS)
	@mkdir -p build-fuzz
	$(FUZZ_CC) $(FUZZ_ALL_CFLAGS) -o $@ fuzz/fuzz_read.c $(FUZZ_SRC) $(LUA_LIBS) $(SSL_LIBS) -lm

build-fuzz/fuzz_addr: fuzz/fuzz_addr.c $(FUZZ_SRC) $(HDRS)
	@mkdir -p build-fuzz
	$(FUZZ_CC) $(FUZZ_ALL_CFLAGS) -o $@ fuzz/fuzz_addr.c $(FUZZ_SRC) $(LUA_LIBS) $(SSL_LIBS) -lm $(FUZZ_ADDR_WRAP)

build-fuzz/fuzz_http: fuzz/fuzz_http.c $(FUZZ_SRC) $(HDRS)
	@mkdir -p build-fuzz
	$(FUZZ_CC) $(FUZZ_ALL_CFLAGS) -o $@ fuzz/fuzz_http.c $(FUZZ_SRC) $(LUA_LIBS) $(SSL_LIBS) -lm

build-fuzz/fuzz_ws: fuzz/fuzz_ws.c $(FUZZ_SRC) $(HDRS)
	@mkdir -p build-fuzz
	$(FUZZ_CC) $(FUZZ_ALL_CFLAGS) -o $@ fuzz/fuzz_ws.c $(FUZZ_SRC) $(LUA_LIBS) $(SSL_LIBS) -lm

build-fuzz/fuzz_tls: fuzz/fuzz_tls.c $(FUZZ_SRC) $(HDRS)
	@mkdir -p build-fuzz
	$(FUZZ_CC) $(FUZZ_ALL_CFLAGS) -o $@ fuzz/fuzz_tls.c $(FUZZ_SRC) $(LUA_LIBS) $(SSL_LIBS) -lm

fuzz: build-fuzz/fuzz_read build-fuzz/fuzz_addr build-fuzz/fuzz_http build-fuzz/fuzz_ws build-fuzz/fuzz_tls
	sh fuzz/run.sh $(FUZZ_SECONDS)

# ---------------------------------------------------------------- issue 15's regime
# The ASan+UBSan build (make asan runs the specs against it) and the environment for it.
ASAN_ENV = CSOCK_BUILD=build-asan LD_PRELOAD="$(ASAN_RT)" ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  LSAN_OPTIONS=suppressions=$(CURDIR)/tools/lsan.supp:print_suppressions=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

build-asan/csock/core.so: $(CORE_SRC) $(HDRS)
	@mkdir -p build-asan/csock
	$(CC) $(ASAN_FLAGS) $(WARN) -fPIC -pthread -std=gnu11 -D_GNU_SOURCE $(LUA_CFLAGS) $(SSL_CFLAGS) $(LIBFLAG) -o $@ $(CORE_SRC) $(SSL_LIBS)

build-asan/bin/csock: $(HOST_SRC) $(CORE_SRC) $(HDRS) build/init_lua.h
	@mkdir -p build-asan/bin
	$(CC) $(ASAN_FLAGS) $(WARN) -pthread -std=gnu11 -D_GNU_SOURCE $(LUA_CFLAGS) $(SSL_CFLAGS) -Ibuild -o $@ $(HOST_SRC) $(CORE_SRC) $(LUA_LIBS) $(SSL_LIBS) -lm -Wl,-E

.PHONY: asan-build fuzz-lua gcstress
asan-build: build-asan/csock/core.so build-asan/bin/csock

# The Lua-API fuzzer (fuzz/lua_api.sh): random csock programs from
# fuzz/gen.lua under the ASan+UBSan build for FUZZ_SECONDS; fails on a
# sanitizer report or a death by signal.  FUZZ_SEED=n replays a run.
FUZZ_SEED ?=
fuzz-lua: deps asan-build
	sh fuzz/lua_api.sh $(FUZZ_SECONDS) $(FUZZ_SEED)

# The whole spec suite once under an aggressive collector (a collection
# step at every allocation, spec/support/gcstress.lua), against the
# ASan+UBSan build; child lua5.4 processes get the same collector through
# LUA_INIT.
GCSTRESS_INIT = @$(CURDIR)/spec/support/gcstress.lua
gcstress: deps all asan-build
	$(RAISE_NOFILE) $(ASAN_ENV) LUA_INIT_5_4="$(GCSTRESS_INIT)" CSOCK_GCSTRESS=1 \
	  $(BUSTED) --cpath='./build-asan/?.so' $(BUSTED_ARGS)
