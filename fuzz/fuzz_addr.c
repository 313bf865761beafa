/*
** fuzz/fuzz_addr.c - libFuzzer harness over address parsing: the host, port
** and path arguments of bind, connect and sendto, and csock.getaddrinfo.
**
** Built with -DCSOCK_NO_RESOLVER (a name fails at once with EAI_NONAME) and
** linked with --wrap for bind, connect, sendto and getaddrinfo: the wrappers
** below never let a packet or a file out.  They copy the sockaddr csock
** built (ASan sees any read past it), check that its length fits its
** family, and keep it, so the Lua driver can compare it with what the
** arguments asked for: the same numeric address and port, the same unix
** path, byte for byte.  getaddrinfo gets AI_NUMERICHOST added, so a name
** never reaches DNS.
**
** Input: a sequence of calls, each taking an opcode byte (family, type,
** method), a length byte and that many bytes of host or path (zeros
** included), and a byte choosing the port (in range, negative, huge, a
** float, a string, nil).  Every call runs under pcall: an error must be a
** string naming the method; a result must be true, or nil, message, code.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

int luaopen_csock_core(lua_State *L);

static struct sockaddr_storage last;
static socklen_t last_len;
static int last_set;

static void bad(const char *what) {
  fprintf(stderr, "fuzz_addr: %s\n", what);
  abort();
}

/* Keeps a copy of the address a call was given, after checking its length. */
static void keep(const struct sockaddr *sa, socklen_t len) {
  if (len < sizeof(sa_family_t) || len > sizeof last) bad("address length out of range");
  memset(&last, 0, sizeof last);
  memcpy(&last, sa, len); /* ASan: a read past the caller's object fails here */
  last_len = len;
  last_set = 1;
  switch (last.ss_family) {
    case AF_INET:
      if (len != sizeof(struct sockaddr_in)) bad("AF_INET address of the wrong length");
      break;
    case AF_INET6:
      if (len != sizeof(struct sockaddr_in6)) bad("AF_INET6 address of the wrong length");
      break;
    case AF_UNIX: {
      const struct sockaddr_un *un = (const struct sockaddr_un *)&last;
      size_t off = offsetof(struct sockaddr_un, sun_path);
      if (len > sizeof(struct sockaddr_un) || len <= off) bad("AF_UNIX address of the wrong length");
      if (un->sun_path[0] != '\0' && un->sun_path[len - off - 1] != '\0')
        bad("AF_UNIX pathname not terminated within its length");
      break;
    }
    default:
      bad("unknown address family");
  }
}

int __wrap_bind(int fd, const struct sockaddr *sa, socklen_t len) {
  (void)fd;
  keep(sa, len);
  return 0;
}

int __wrap_connect(int fd, const struct sockaddr *sa, socklen_t len) {
  (void)fd;
  keep(sa, len);
  errno = ECONNREFUSED;
  return -1;
}

ssize_t __wrap_sendto(int fd, const void *buf, size_t n, int flags,
                      const struct sockaddr *sa, socklen_t len) {
  (void)fd, (void)flags;
  if (n > 0) {
    volatile char c = ((const char *)buf)[n - 1]; /* the data must be readable */
    (void)c;
  }
  keep(sa, len);
  return (ssize_t)n;
}

int __real_getaddrinfo(const char *, const char *, const struct addrinfo *,
                       struct addrinfo **);

int __wrap_getaddrinfo(const char *host, const char *serv,
                       const struct addrinfo *hints, struct addrinfo **res) {
  struct addrinfo h;
  memset(&h, 0, sizeof h);
  if (hints) h = *hints;
  h.ai_flags |= AI_NUMERICHOST; /* never DNS, never /etc/hosts */
  h.ai_flags &= ~AI_CANONNAME;
  return __real_getaddrinfo(host, serv, &h, res);
}

/* __last(): nil, or family, len, then addr, port (inet) or the path bytes. */
static int f_last(lua_State *L) {
  if (!last_set) return 0;
  last_set = 0;
  char text[INET6_ADDRSTRLEN];
  lua_pushinteger(L, last.ss_family);
  lua_pushinteger(L, last_len);
  if (last.ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)&last;
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    lua_pushstring(L, text);
    lua_pushinteger(L, ntohs(in->sin_port));
    return 4;
  }
  if (last.ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&last;
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    lua_pushstring(L, text);
    lua_pushinteger(L, ntohs(in6->sin6_port));
    return 4;
  }
  const struct sockaddr_un *un = (const struct sockaddr_un *)&last;
  size_t n = last_len - offsetof(struct sockaddr_un, sun_path);
  if (un->sun_path[0] != '\0') n--; /* the terminating zero */
  lua_pushlstring(L, un->sun_path, n);
  return 3;
}

/* __pton(family, host): the canonical text of a numeric host, or nil. */
static int f_pton(lua_State *L) {
  int family = (int)luaL_checkinteger(L, 1);
  const char *host = luaL_checkstring(L, 2);
  unsigned char buf[sizeof(struct in6_addr)];
  char text[INET6_ADDRSTRLEN];
  if (inet_pton(family, host, buf) != 1) return 0;
  inet_ntop(family, buf, text, sizeof text);
  lua_pushstring(L, text);
  return 1;
}

static int f_fail(lua_State *L) {
  bad(luaL_checkstring(L, 1));
  return 0;
}

static const char driver[] =
    "local csock, input = ...\n"
    "local i = 1\n"
    "local function byte() local c = input:byte(i) or 0; i = i + 1; return c end\n"
    "local function take(n) local s = input:sub(i, i + n - 1); i = i + n; return s end\n"
    "local function fail(fmt, ...) __fail(string.format(fmt, ...)) end\n"
    "local lenient = os.getenv('FUZZ_ADDR_LENIENT')\n"
    "local fams = {csock.AF_INET, csock.AF_INET6, csock.AF_UNIX}\n"
    "local names = {'bind', 'connect', 'sendto', 'getaddrinfo'}\n"
    "local ports = {function() return byte() * 256 + byte() end, function() return -1 end,\n"
    "  function() return 65536 end, function() return math.maxinteger end,\n"
    "  function() return 1.5 end, function() return tostring(byte()) end,\n"
    "  function() return nil end, function() return 0 / 0 end, function() return 2^63 end,\n"
    "  function() return math.mininteger end, function() return {} end}\n"
    "while i <= #input do\n"
    "  local op = byte()\n"
    "  local family = fams[op % 3 + 1]\n"
    "  local stype = (op // 3) % 2 == 0 and csock.SOCK_STREAM or csock.SOCK_DGRAM\n"
    "  local name = names[(op // 6) % 4 + 1]\n"
    "  local lb = byte()\n"
    "  local len = lb < 128 and lb or 100 + (lb - 128) % 16 * 1 + (lb >= 240 and 150 or 0)\n"
    "  local host = take(len)\n"
    "  local port = ports[byte() % #ports + 1]()\n"
    "  local ok, r1, r2, r3, r4\n"
    "  if name == 'getaddrinfo' then\n"
    "    local hints = (op & 0x80) ~= 0 and {family = fams[op % 3 + 1], socktype = stype, flags = byte() % 64} or nil\n"
    "    ok, r1, r2, r3 = pcall(function() return csock.getaddrinfo(host, port, hints) end)\n"
    "  else\n"
    "    local s = assert(csock.socket(family, stype))\n"
    /* called as methods, so that Lua knows the name an error must carry */
    "    if name == 'sendto' then\n"
    "      if family == csock.AF_UNIX then ok, r1, r2, r3, r4 = pcall(function() return s:sendto('data', host) end)\n"
    "      else ok, r1, r2, r3, r4 = pcall(function() return s:sendto('data', host, port) end) end\n"
    "    elseif name == 'bind' then\n"
    "      if family == csock.AF_UNIX then ok, r1, r2, r3, r4 = pcall(function() return s:bind(host) end)\n"
    "      else ok, r1, r2, r3, r4 = pcall(function() return s:bind(host, port) end) end\n"
    "    else\n"
    "      if family == csock.AF_UNIX then ok, r1, r2, r3, r4 = pcall(function() return s:connect(host) end)\n"
    "      else ok, r1, r2, r3, r4 = pcall(function() return s:connect(host, port) end) end\n"
    "    end\n"
    "    s:close()\n"
    "  end\n"
    "  local got = table.pack(__last())\n"
    "  if not ok then\n"
    "    if type(r1) ~= 'string' or not r1:find(\"'\" .. name .. \"'\", 1, true) then\n"
    "      fail('%s raised an error that does not name it: %s', name, tostring(r1))\n"
    "    end\n"
    "    if got.n > 0 then fail('%s raised after making the call: %s', name, r1) end\n"
    "  elseif name == 'getaddrinfo' then\n"
    "    if type(r1) == 'table' then\n"
    "      for _, a in ipairs(r1) do\n"
    "        if type(a.addr) ~= 'string' or math.type(a.port) ~= 'integer' then fail('getaddrinfo entry without addr/port') end\n"
    "        if not __pton(a.family, a.addr) then fail('getaddrinfo gave a non-numeric addr %q', a.addr) end\n"
    "      end\n"
    "    elseif not (r1 == nil and type(r2) == 'string' and math.type(r3) == 'integer') then\n"
    "      fail('getaddrinfo returned %s, %s, %s', tostring(r1), tostring(r2), tostring(r3))\n"
    "    end\n"
    "  else\n"
    "    if family == csock.AF_UNIX then\n"
    "      local z = host:find('\\0', 2, true)\n"
    "      if #host >= 108 then fail('%s accepted a %d-byte unix path', name, #host) end\n"
    "      if #host == 0 or z then fail('%s accepted a path with a zero byte or empty: %q', name, host) end\n"
    "      if got.n == 0 then fail('%s succeeded without a system call', name) end\n"
    "      if got[1] ~= csock.AF_UNIX or got[3] ~= host then fail('%s: path %q became %q', name, host, tostring(got[3])) end\n"
    "    elseif got.n > 0 then\n"
    "      local want = (host == '*' or host == '') and (family == csock.AF_INET and '0.0.0.0' or '::') or __pton(family, host)\n"
    "      if got[1] ~= family then fail('%s: family %d became %d', name, family, got[1]) end\n"
    "      if want == nil then fail('%s: %q reached the system call without being numeric', name, host) end\n"
    "      if got[3] ~= want then fail('%s: host %q became %q', name, host, got[3]) end\n"
    "      if math.tointeger(port) ~= got[4] then fail('%s: port %s became %d', name, tostring(port), got[4]) end\n"
    /* a name: the resolver is compiled out, so EAI_NONAME at once */
    "    elseif not (r1 == nil and type(r2) == 'string' and (r3 == csock.EAI_NONAME or (lenient and math.type(r3) == 'integer'))) then\n"
    "      fail('%s: no system call, and the result is %s, %s, %s', name, tostring(r1), tostring(r2), tostring(r3))\n"
    "    end\n"
    "    if got.n > 0 and not (r1 == true or r1 == 4 or (r1 == nil and r3 == csock.ECONNREFUSED)) then\n"
    "      fail('%s returned %s, %s, %s', name, tostring(r1), tostring(r2), tostring(r3))\n"
    "    end\n"
    "  end\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_register(L, "__fail", f_fail);
  lua_register(L, "__last", f_last);
  lua_register(L, "__pton", f_pton);
  if (luaL_loadbuffer(L, driver, sizeof driver - 1, "=fuzz_addr") != LUA_OK) bad(lua_tostring(L, -1));
  luaL_requiref(L, "csock.core", luaopen_csock_core, 0);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    fprintf(stderr, "fuzz_addr: unexpected error: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_close(L);
  last_set = 0;
  return 0;
}
