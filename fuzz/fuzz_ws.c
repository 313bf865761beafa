/*
** fuzz/fuzz_ws.c - libFuzzer harness over the WebSocket frame reader
** (lua/csock/websocket.lua) and the byte helpers under it (src/ws.c).
**
** Input: byte 0 chooses the side (bit 0: a client, else a server), a small
** max_frame/max_message (bits 1-2) and whether the stream arrives in two
** pieces with a timeout between (bit 3); the rest is what the peer sends.
** The bytes go into one end of a socketpair, the other end becomes a
** websocket (timeout 0, outside any loop), and receive runs until the
** close.  Invariants: receive never raises; it returns data with "text"
** (valid UTF-8, as utf8.len says) or "binary", no longer than max_message,
** or nil with "timeout" (only before the second piece) or "closed" and a
** close code the RFC allows, and once closed it stays closed.  Beside
** that, csock.core.ws.utf8 agrees with utf8.len on the raw input and
** unmask undoes the masking of frame.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

int luaopen_csock_core(lua_State *L);

#define MAX_PAYLOAD (64 * 1024)

static const char driver[] =
    "package.path = './lua/?.lua;./lua/?/init.lua;' .. package.path\n"
    "local ctl, input = ...\n"
    "local csock = require 'csock'\n"
    "local websocket = require 'csock.websocket'\n"
    "local wsc = csock.ws\n"
    "local function fail(fmt, ...) __fail(string.format(fmt, ...)) end\n"
    /* the helpers against their references */
    "if wsc.utf8(input) ~= (utf8.len(input) ~= nil) then fail('utf8 disagrees with utf8.len') end\n"
    "local f = wsc.frame(0x82, input, true)\n"
    "local head = #f - #input - 4\n"
    "local key = string.unpack('>I4', f, head + 1)\n"
    "if wsc.unmask(f, key, head + 5) ~= input then fail('unmask does not undo frame') end\n"
    /* the reader */
    "local client = ctl & 1 == 1\n"
    "local limit = ({1 << 20, 200, 10, 0})[(ctl >> 1 & 3) + 1]\n"
    "local split = ctl & 8 == 8 and #input // 2 or #input\n"
    "local a, b = assert(csock.socketpair())\n"
    "a:settimeout(0)\n"
    "local ws = websocket._wrap(b, client, {timeout = 0, close_timeout = 0, max_message = limit})\n"
    "assert(a:write(input:sub(1, split)))\n"
    "local fed, closed = split == #input, nil\n"
    "if fed then a:shutdown('w') end\n"
    "local codes = {[1000]=1,[1001]=1,[1002]=1,[1003]=1,[1005]=1,[1006]=1,[1007]=1,[1008]=1,\n"
    "  [1009]=1,[1010]=1,[1011]=1,[1012]=1,[1013]=1,[1014]=1}\n"
    "for _ = 1, 10000 do\n"
    "  local ok, data, kind, code, reason = pcall(ws.receive, ws)\n"
    "  if not ok then fail('receive raised: %s', tostring(data)) end\n"
    "  if data then\n"
    "    if closed then fail('a message after the close') end\n"
    "    if kind == 'text' then\n"
    "      if not utf8.len(data) then fail('text that is not UTF-8') end\n"
    "    elseif kind ~= 'binary' then fail('kind %s', tostring(kind)) end\n"
    "    if #data > limit then fail('message of %d over %d', #data, limit) end\n"
    "  elseif kind == 'timeout' then\n"
    "    if fed then fail('timeout with everything sent') end\n"
    "    assert(a:write(input:sub(split + 1)))\n"
    "    a:shutdown('w')\n"
    "    fed = true\n"
    "  elseif kind == 'closed' then\n"
    "    local known = codes[code] or (code >= 3000 and code <= 4999)\n"
    "    if not known then fail('close code %s', tostring(code)) end\n"
    "    if type(reason) ~= 'string' then fail('reason %s', tostring(reason)) end\n"
    "    if closed and closed ~= code then fail('close code changed') end\n"
    "    if closed then break end\n"
    "    closed = code\n"
    "  else\n"
    "    fail('receive gave %s, %s', tostring(data), tostring(kind))\n"
    "  end\n"
    "end\n"
    "if not closed then fail('no close after the end of the stream') end\n"
    "a:close()\n";

static int fuzz_fail(lua_State *L) {
  fprintf(stderr, "fuzz_ws: invariant broken: %s\n", luaL_checkstring(L, 1));
  abort();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  size_t n = size - 1 > MAX_PAYLOAD ? MAX_PAYLOAD : size - 1;
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_register(L, "__fail", fuzz_fail);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_csock_core);
  lua_setfield(L, -2, "csock.core");
  lua_pop(L, 1);
  if (luaL_loadbuffer(L, driver, sizeof driver - 1, "=fuzz_ws") != LUA_OK) {
    fprintf(stderr, "fuzz_ws: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_pushinteger(L, data[0]);
  lua_pushlstring(L, (const char *)data + 1, n);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    fprintf(stderr, "fuzz_ws: unexpected error: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_close(L);
  return 0;
}
