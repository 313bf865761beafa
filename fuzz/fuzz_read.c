/*
** fuzz/fuzz_read.c - libFuzzer harness over the read buffer and its formats.
**
** Input: byte 0 gives the length of the control part (byte 0 % 64), the
** control bytes follow, the rest is the payload.  Each input gets a fresh
** lua_State with csock.core; the payload goes into one end of a socketpair
** (in pieces, as the control bytes say) and the other end, with timeout 0,
** runs a sequence of read formats ("l", "L", "a", counts, several at once),
** recv(n) and setmaxline(n).  A reference model in the Lua driver below
** knows what each call must return; any difference - a byte lost, repeated
** or out of order, a nil before the end, a line longer than the maximum -
** aborts, and libFuzzer records the input.
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
    "local csock, ctl, payload = ...\n"
    "local a, b = assert(csock.socketpair())\n"
    "a:settimeout(0); b:settimeout(0)\n"
    "local fed, shut, pos, maxline = 0, false, 1, 64 * 1024\n"
    "local i = 1\n"
    "local function byte() local c = ctl:byte(i) or 0; i = i + 1; return c end\n"
    "local function fail(fmt, ...) __fail(string.format(fmt, ...)) end\n"
    "local trace = os.getenv('FUZZ_TRACE') and function(fmt, ...) io.stderr:write(string.format(fmt, ...), '\\n') end or function() end\n"
    "local function feed(n)\n"
    "  n = math.min(n, #payload - fed)\n"
    "  if n <= 0 or shut then return end\n"
    "  trace('feed %d bytes', n)\n"
    "  local ok, err = a:write(payload:sub(fed + 1, fed + n))\n"
    "  if not ok then fail('write failed: %s', tostring(err)) end\n"
    "  fed = fed + n\n"
    "end\n"
    "local function shutdown() feed(#payload); shut = true; trace('shutdown'); a:shutdown('w') end\n"
    /* what format f must give now: value (nil, string or 'timeout'/'toolong') and bytes taken */
    "local TIMEOUT, TOOLONG = {}, {} -- model outcomes, apart from any data\n"
    "local function model(f)\n"
    "  local rest = fed - pos + 1\n"
    "  if f == 'l' or f == 'L' then\n"
    "    local nl = payload:find('\\n', pos, true)\n"
    "    if nl and nl > fed then nl = nil end\n"
    "    if nl then\n"
    "      if nl - pos > maxline then return TOOLONG, 0 end\n"
    "      return payload:sub(pos, f == 'l' and nl - 1 or nl), nl - pos + 1\n"
    "    end\n"
    "    if rest > maxline then return TOOLONG, 0 end\n"
    "    if not shut then return TIMEOUT, 0 end\n"
    "    if rest == 0 then return nil, 0 end\n"
    "    return payload:sub(pos, fed), rest\n"
    "  elseif f == 'a' then\n"
    "    if not shut then return TIMEOUT, 0 end\n"
    "    return payload:sub(pos, fed), rest\n"
    "  else\n"
    "    if f == 0 then\n"
    "      if rest > 0 then return '', 0 end\n"
    "      if shut then return nil, 0 end\n"
    "      return TIMEOUT, 0\n"
    "    end\n"
    "    if rest >= f then return payload:sub(pos, pos + f - 1), f end\n"
    "    if not shut then return TIMEOUT, 0 end\n"
    "    if rest == 0 then return nil, 0 end\n"
    "    return payload:sub(pos, fed), rest\n"
    "  end\n"
    "end\n"
    "local function show(fmts) local t = {} for k, f in ipairs(fmts) do t[k] = string.format('%q', f) end return table.concat(t, ',') end\n"
    /* read(fmts...) against the model */
    "local function check_read(fmts)\n"
    "  local res = table.pack(b:read(table.unpack(fmts)))\n"
    "  trace('read(%s) -> %d results: %s, %s, %s', show(fmts), res.n, tostring(res[1]):sub(1, 40), tostring(res[2]):sub(1, 40), tostring(res[3]):sub(1, 40))\n"
    /* the model's results for the formats in turn, up to a nil or a failure */
    "  local start, exp, failat, kind = pos, {n = 0}, nil, nil\n"
    "  for k, f in ipairs(fmts) do\n"
    "    local want, take = model(f)\n"
    "    if want == TIMEOUT or want == TOOLONG then failat, kind = k, (want == TIMEOUT and 'timeout' or 'toolong'); break end\n"
    "    exp[k], exp.n = want, k\n"
    "    if want == nil then break end\n"
    "    pos = pos + take\n"
    "  end\n"
    "  if failat then\n"
    "    local code = kind == 'timeout' and csock.ETIMEDOUT or csock.EMSGSIZE\n"
    "    local msg = kind == 'timeout' and 'timeout' or 'line too long'\n"
    "    if res[1] ~= nil or res[2] ~= msg or res[3] ~= code or res.n ~= 3 then\n"
    "      fail('read(%s): format %d should fail with %s, got %s, %s, %s', show(fmts), failat, kind, tostring(res[1]), tostring(res[2]), tostring(res[3]))\n"
    "    end\n"
    "    pos = start -- a failed read leaves every byte in the buffer (SPEC)\n"
    "    return\n"
    "  end\n"
    "  if res.n ~= exp.n then fail('read(%s): %d results, model says %d', show(fmts), res.n, exp.n) end\n"
    "  for k = 1, exp.n do\n"
    "    if res[k] ~= exp[k] then\n"
    "      fail('read(%s): result %d is %q, model says %q (from %d, fed %d, shut %s, maxline %d)', show(fmts), k, tostring(res[k]), tostring(exp[k]), start, fed, tostring(shut), maxline)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local function check_recv(n)\n"
    "  local r, err, code = b:recv(n)\n"
    "  trace('recv(%d) -> %s, %s', n, tostring(r):sub(1, 40), tostring(err))\n"
    "  local rest = fed - pos + 1\n"
    "  if rest == 0 then\n"
    "    if shut then\n"
    "      if r ~= '' then fail('recv(%d) at end gave %s, %s', n, tostring(r), tostring(err)) end\n"
    "    elseif r ~= nil or code ~= csock.ETIMEDOUT then fail('recv(%d) on nothing gave %s, %s', n, tostring(r), tostring(err)) end\n"
    "    return\n"
    "  end\n"
    "  if type(r) ~= 'string' or #r == 0 or #r > n then fail('recv(%d) with %d bytes waiting gave %s, %s', n, rest, tostring(r), tostring(err)) end\n"
    "  if r ~= payload:sub(pos, pos + #r - 1) then fail('recv(%d) gave bytes out of order', n) end\n"
    "  pos = pos + #r\n"
    "end\n"
    "local function format()\n"
    "  local c = byte()\n"
    "  local k = c % 5\n"
    "  if k == 0 then return 'l' elseif k == 1 then return 'L' elseif k == 2 then return 'a'\n"
    "  elseif k == 3 then return c // 5 else return (c // 5) * 97 end\n"
    "end\n"
    "while i <= #ctl do\n"
    "  local op = byte() % 10\n"
    "  if op == 0 then check_read({'l'})\n"
    "  elseif op == 1 then check_read({'L'})\n"
    "  elseif op == 2 then check_read({'a'})\n"
    "  elseif op == 3 then check_read({byte()})\n"
    "  elseif op == 4 then\n"
    "    local fmts = {}\n"
    "    for _ = 1, 2 + byte() % 3 do fmts[#fmts + 1] = format() end\n"
    "    check_read(fmts)\n"
    "  elseif op == 5 then check_recv(byte() + 1)\n"
    "  elseif op == 6 then\n"
    "    local c = byte()\n"
    "    maxline = c < 128 and c + 1 or (c - 127) * 256\n"
    "    trace('setmaxline(%d)', maxline)\n"
    "    b:setmaxline(maxline)\n"
    "  elseif op == 7 then feed(byte() * 16 + 1)\n"
    "  elseif op == 8 then feed(byte() + 1)\n"
    "  else shutdown() end\n"
    "end\n"
    /* the end: everything left comes back in order, then the end of stream */
    "shutdown()\n"
    "maxline = 1 << 40; b:setmaxline(maxline)\n"
    "check_read({'a'})\n"
    "check_read({'l'})\n"
    "if pos ~= #payload + 1 then fail('ended at %d of %d', pos, #payload) end\n"
    "a:close(); b:close()\n";

static int fuzz_fail(lua_State *L) {
  fprintf(stderr, "fuzz_read: invariant broken: %s\n", luaL_checkstring(L, 1));
  abort();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  size_t nctl = data[0] % 64;
  if (nctl > size - 1) nctl = size - 1;
  const char *ctl = (const char *)data + 1;
  const char *payload = ctl + nctl;
  size_t npayload = size - 1 - nctl;
  if (npayload > MAX_PAYLOAD) npayload = MAX_PAYLOAD;

  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_register(L, "__fail", fuzz_fail);
  if (luaL_loadbuffer(L, driver, sizeof driver - 1, "=fuzz_read") != LUA_OK) {
    fprintf(stderr, "fuzz_read: %s\n", lua_tostring(L, -1));
    abort();
  }
  luaL_requiref(L, "csock.core", luaopen_csock_core, 0);
  lua_pushlstring(L, ctl, nctl);
  lua_pushlstring(L, payload, npayload);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    fprintf(stderr, "fuzz_read: unexpected error: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_close(L);
  return 0;
}
