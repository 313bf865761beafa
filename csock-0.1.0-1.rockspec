rockspec_format = "3.0"
package = "csock"
version = "0.1.0-1"
source = {
  url = "https://github.com/csock/csock/archive/v0.1.0.tar.gz",
  dir = "csock-0.1.0",
}
description = {
  summary = "POSIX sockets and an epoll runtime of coroutine tasks for Lua 5.4",
  detailed = [[
csock exposes socket, setsockopt, bind, listen, accept, connect and the I/O
around them to Lua 5.4, with sockets as userdata.  The same blocking-style
calls suspend only their own task inside csock's epoll loop, and the csock
host executable runs scripts as the loop's first task.
]],
  license = "MIT",
  homepage = "https://github.com/csock/csock",
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
external_dependencies = {
  OPENSSL = { header = "openssl/ssl.h", library = "ssl" }, -- Debian: libssl-dev
}
build = {
  type = "make",
  build_variables = {
    OPENSSL_INCDIR = "$(OPENSSL_INCDIR)",
    OPENSSL_LIBDIR = "$(OPENSSL_LIBDIR)",
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LUA_LIBDIR = "$(LUA_LIBDIR)",
    LUA = "$(LUA)",
  },
  install_variables = {
    PREFIX = "$(PREFIX)",
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
    BINDIR = "$(BINDIR)",
  },
  install = {
    bin = { csock = "bin/csock" },
  },
}
