/*
** fuzz/fuzz_http.c - libFuzzer harness over the HTTP/1.1 parser (src/http.c).
**
** Input: byte 0 picks the kind (bit 0: responses instead of requests) and
** small limits (bits 1-3), byte 1 the size of the pieces the payload is fed
** in (0: all at once); the rest is the payload.  Each input gets a fresh
** lua_State with csock.core.  The driver parses the payload twice through a
** socketpair with timeout 0: once with every byte there and the sender shut
** down, once fed piece by piece, retrying after each timeout.  Heads, bodies
** (Content-Length and chunked) and failures must come out the same both
** ways (a timeout loses no byte and a wait changes no verdict), and every
** parsed head must hold only what RFC 9112 lets through: a token method,
** a target without blanks or controls, lowercase token names, values
** without CR, LF, NUL or outer blanks.  Any difference aborts.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

int luaopen_csock_core(lua_State *L);

#define MAX_PAYLOAD (32 * 1024)

static const char driver[] =
    "local csock, flags, piece, payload = ...\n"
    "local response = flags & 1 == 1\n"
    "local small = (flags >> 1) & 7\n"
    "local max_line = small == 0 and 8192 or 16 * small\n"
    "local max_bytes = small == 0 and 65536 or 64 * small\n"
    "local max_headers = small == 0 and 100 or small\n"
    "local function fail(fmt, ...) __fail(string.format(fmt, ...)) end\n"
    "local TOKEN = \"^[%w!#$%%&'*+%-.^_`|~]+$\"\n"
    "local function check_head(a, b, c, d, headers, lines, bodylen)\n"
    "  if not response then\n"
    "    if not a:find(TOKEN) then fail('method %q', a) end\n"
    "    if b:find('[%z\\1-\\32\\127-\\255]') then fail('path %q', b) end\n"
    "    if c and c:find('[%z\\1-\\32\\127-\\255]') then fail('query %q', c) end\n"
    "    if bodylen < -1 then fail('request body length %d', bodylen) end\n"
    "  elseif a < 100 or a > 999 then fail('status %d', a) end\n"
    "  if response and d ~= 0 and d ~= 1 then fail('minor %s', tostring(d)) end\n"
    "  if not response and d ~= '1.0' and d ~= '1.1' then fail('version %s', tostring(d)) end\n"
    "  if headers ~= false then fail('headers %s', tostring(headers)) end\n"
    "  for k, v in pairs(csock.http.fields(lines, {})) do\n"
    "    if not k:find(TOKEN) or k:find('%u') then fail('name %q', k) end\n"
    "    if v:find('[%z\\r\\n]') or v:find('^[ \\t]') or v:find('[ \\t]$') then fail('value %q', v) end\n"
    "  end\n"
    "  local n = 0\n"
    "  for _ in lines:gmatch('\\r\\n') do n = n + 1 end\n"
    "  if n > max_headers then fail('%d fields over %d', n, max_headers) end\n"
    "  if #lines > max_bytes + 2 then fail('%d bytes of fields', #lines) end\n"
    "end\n"
    /* call(f, ...) retries f after a timeout while feed() has bytes left */
    "local function run(feed, b)\n"
    "  local out = {}\n"
    "  local function call(f, ...)\n"
    "    while true do\n"
    "      local r = table.pack(f(b, ...))\n"
    "      if r[1] ~= nil or r[3] ~= csock.ETIMEDOUT or not feed() then return r end\n"
    "    end\n"
    "  end\n"
    "  local function note(r) local t = {} for i = 1, r.n do t[i] = tostring(r[i]) end\n"
    "    out[#out + 1] = table.concat(t, ' ') end\n"
    "  for _ = 1, 200 do\n"
    "    local r = call(response and b._httpres or b._httpreq, 0, 0, max_line, max_bytes, max_headers)\n"
    "    if not r[1] then\n"
    "      if r[1] == false then note(r) else out[#out + 1] = 'end ' .. tostring(r[2]) end\n"
    "      return out\n"
    "    end\n"
    "    if response then table.insert(r, 3, nil) end -- status, reason, (no query), minor, ...\n"
    "    check_head(table.unpack(r, 1, 7))\n"
    "    local keys = {}\n"
    "    for k, v in pairs(csock.http.fields(r[6], {})) do keys[#keys + 1] = k .. '=' .. v end\n"
    "    table.sort(keys)\n"
    "    out[#out + 1] = table.concat({tostring(r[1]), tostring(r[2]), tostring(r[3]), tostring(r[4]),\n"
    "      table.concat(keys, ';'), r[6], tostring(r[7]), tostring(r[8])}, '|')\n"
    "    local len = r[7]\n"
    "    if len > 0 then\n"
    "      local d = call(b.read, len)\n"
    "      out[#out + 1] = 'body ' .. tostring(d[1])\n"
    "      if not d[1] or #d[1] < len then return out end\n"
    "    elseif len == -1 then\n"
    "      local after = false\n"
    "      while true do\n"
    "        local c = call(b._httpchunk, 0, after, 4096, max_bytes, max_headers)\n"
    "        if not c[1] then note(c) return out end\n"
    "        if c[1] == 0 then break end\n"
    "        if c[1] > MAXCHUNK then out[#out + 1] = 'big chunk' return out end\n"
    "        local d = call(b.read, c[1])\n"
    "        out[#out + 1] = 'chunk ' .. tostring(d[1])\n"
    "        if not d[1] or #d[1] < c[1] then return out end\n"
    "        after = true\n"
    "      end\n"
    "    elseif len == -2 then\n"
    "      out[#out + 1] = 'rest'\n"
    "      return out\n"
    "    end\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "MAXCHUNK = 65536\n"
    /* all at once */
    "local a, b = assert(csock.socketpair())\n"
    "a:write(payload) a:shutdown('w') b:settimeout(0)\n"
    "local whole = run(function() return false end, b)\n"
    "a:close() b:close()\n"
    /* in pieces */
    "a, b = assert(csock.socketpair())\n"
    "b:settimeout(0)\n"
    "local fed, shut = 0, false\n"
    "local step = piece > 0 and piece or #payload\n"
    "local function feed()\n"
    "  if shut then return false end\n"
    "  if fed >= #payload then a:shutdown('w') shut = true return true end\n"
    "  a:write(payload:sub(fed + 1, fed + step)) fed = fed + step\n"
    "  return true\n"
    "end\n"
    "feed()\n"
    "local pieces = run(feed, b)\n"
    "a:close() b:close()\n"
    "for i = 1, math.max(#whole, #pieces) do\n"
    "  if whole[i] ~= pieces[i] then\n"
    "    fail('step %d: at once %q, in pieces of %d %q', i, tostring(whole[i]), step, tostring(pieces[i]))\n"
    "  end\n"
    "end\n";

static int fuzz_fail(lua_State *L) {
  fprintf(stderr, "fuzz_http: invariant broken: %s\n", luaL_checkstring(L, 1));
  abort();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  size_t npayload = size - 2;
  if (npayload > MAX_PAYLOAD) npayload = MAX_PAYLOAD;

  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_register(L, "__fail", fuzz_fail);
  if (luaL_loadbuffer(L, driver, sizeof driver - 1, "=fuzz_http") != LUA_OK) {
    fprintf(stderr, "fuzz_http: %s\n", lua_tostring(L, -1));
    abort();
  }
  luaL_requiref(L, "csock.core", luaopen_csock_core, 0);
  lua_pushinteger(L, data[0]);
  lua_pushinteger(L, data[1]);
  lua_pushlstring(L, (const char *)data + 2, npayload);
  if (lua_pcall(L, 4, 0, 0) != LUA_OK) {
    fprintf(stderr, "fuzz_http: unexpected error: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_close(L);
  return 0;
}
