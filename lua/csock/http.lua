-- csock.http: an HTTP/1.1 server and client on csock's sockets and tasks.
--
-- The heads of messages and the chunk-size lines are parsed in C, in the socket's read buffer
-- (src/http.c, the socket methods _httpreq, _httpres and _httpchunk); this file does the rest:
-- request and response objects, bodies (Content-Length, chunked, to end of stream), limits and
-- timeouts, keep-alive and pipelining, graceful close, and the client's connection pool.
-- docs/http.md is the guide, docs/reference.md the reference.
local csock = require "csock"

local type, tostring, tointeger, error, xpcall = type, tostring, math.tointeger, error, xpcall
local setmetatable, rawget, select, pairs, ipairs = setmetatable, rawget, select, pairs, ipairs
local format, concat, min = string.format, table.concat, math.min
local traceback = debug.traceback
local spawn, current, ETIMEDOUT = csock.spawn, csock.current, csock.ETIMEDOUT
local headers_of = require("csock.core").http.fields
local EPROTO = csock.EPROTO or 71 -- Linux's value, for a core built without TLS

local http = {}

local BODY_CHUNKED <const>, BODY_TO_CLOSE <const> = -1, -2
-- 8: Connection: upgrade; F_KEEP, F_KEEP10: a request's connection may go on after the
-- response, by HTTP/1.1's default or HTTP/1.0's keep-alive (src/http.c)
local F_CLOSE <const>, F_KEEPALIVE <const>, F_CONTINUE <const> = 1, 2, 4
local F_EXPECT_OTHER <const>, F_KEEP <const>, F_KEEP10 <const> = 16, 32, 64
local PIECE = 65536 -- the most one body read takes from the socket
local CHUNK_LINE = 4096

local DEFAULTS = {
  max_line = 8 * 1024,
  max_header_bytes = 64 * 1024,
  max_headers = 100,
  max_body = 8 * 1024 * 1024,
  header_timeout = 10,
  idle_timeout = 60,
  body_timeout = 30,
}

local REASONS = {
  [100] = "Continue", [101] = "Switching Protocols", [200] = "OK", [201] = "Created",
  [202] = "Accepted", [204] = "No Content", [206] = "Partial Content",
  [301] = "Moved Permanently", [302] = "Found", [303] = "See Other", [304] = "Not Modified",
  [307] = "Temporary Redirect", [308] = "Permanent Redirect", [400] = "Bad Request",
  [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [408] = "Request Timeout", [409] = "Conflict",
  [411] = "Length Required", [413] = "Content Too Large", [414] = "URI Too Long",
  [415] = "Unsupported Media Type", [417] = "Expectation Failed", [426] = "Upgrade Required",
  [429] = "Too Many Requests", [431] = "Request Header Fields Too Large",
  [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout",
  [505] = "HTTP Version Not Supported",
}
http.reasons = REASONS

-- Status lines, made once per code.
local status_lines = setmetatable({}, {__index = function(t, code)
  local line = format("HTTP/1.1 %d %s\r\n", code, REASONS[code] or "Unknown")
  t[code] = line
  return line
end})

-- "Content-Length: n\r\n" lines, made once per length (numbers print through snprintf).
local content_length = setmetatable({}, {__index = function(t, n)
  local line = "Content-Length: " .. n .. "\r\n"
  if n < 4096 then t[n] = line end
  return line
end})

local function argerror(n, fname, msg, level)
  error(format("bad argument #%d to '%s' (%s)", n, fname, msg), (level or 2) + 1)
end

-- headers[name] in any letter case: the C parser stores lowercase names; a miss lowercases.
local HEADERS = {__index = function(t, k)
  if type(k) == "string" then
    local l = k:lower()
    if l ~= k then return rawget(t, l) end
  end
  return nil
end}
http.HEADERS = HEADERS

-- rawheaders, built when first asked for from the header lines as they came (C has
-- checked them: a token, a colon, the value between optional blanks, CRLF).
local function rawheaders(lines)
  local t = {}
  for name, value in lines:gmatch("([^:]+):[ \t]*(.-)[ \t]*\r\n") do t[#t + 1] = {name, value} end
  return t
end

-- The Date field line, made at most once a second; with it, the status line and Date line
-- of each code as one string (heads), made again when the second changes.
local date_time, date_line, heads = -1, "", {}
local time, date = os.time, os.date
local function http_date()
  local now = time()
  if now ~= date_time then
    date_time, date_line = now, date("!Date: %a, %d %b %Y %H:%M:%S GMT\r\n", now)
    heads = {}
  end
  return date_line
end

-- The status line and Date line of code, for heads[code] when it is not there yet.
local function status_date(code)
  local h = status_lines[code] .. date_line
  heads[code] = h
  return h
end

-- What ends a head after its fields: Content-Length n, the Connection field the response needs,
-- the empty line; one table of them per Connection field, made once per length.
local function tails(connection)
  return setmetatable({}, {__index = function(t, n)
    local text = content_length[n] .. connection .. "\r\n"
    if n < 4096 then t[n] = text end
    return text
  end})
end
local tail_keep, tail_close, tail_keep10 = tails(""), tails("Connection: close\r\n"),
  tails("Connection: keep-alive\r\n")
-- A response's R_KEEP from its request's flags: false (close) or the tails that keep it.
local KEEP_TAILS = {[0] = false, [F_KEEP] = tail_keep, [F_KEEP | F_KEEP10] = tail_keep10}

-------------------------------------------------------------------------------- messages
-- A message (a server's request, a client's response) is an array of the slots below, and a
-- response object of the R_ slots further down.  One of each is made per request, and a table
-- constructor that fills an array part costs far less than one that inserts as many named
-- keys (no hashing, no rehash as the table grows); the public fields (req.method, ...) are
-- read through __index.
local M_METHOD <const>, M_PATH <const>, M_QUERY <const>, M_VERSION <const> = 1, 2, 3, 4
local M_STATUS <const>, M_REASON <const> = 1, 2 -- a client's response
local M_HEADERS <const>, M_SOCK <const>, M_RAW <const> = 5, 6, 7 -- M_RAW: the header lines
-- the body: "len", "chunked", "close" (to end of stream) or false once it has ended; the
-- status a failed body read calls for (400, 413) or true
local M_MODE <const>, M_FAILED <const> = 8, 9
-- The slots of a body, from M_RES on; a server's request without a body has none of them
-- (its table stops at M_FAILED, and what is not there reads nil -- through the __index
-- function, so the common path reads none of them): the server's response object (for
-- 100-continue), or the client's hook called once the body has ended (the pool); a
-- function to call before the
-- first read (100-continue); bytes left of the body ("len") or of the current chunk; bytes
-- read ahead by read("l") and friends (nil: none); bytes that came so far; whether a chunk's
-- data was read (its CRLF comes before the next size line); {timeout =, max = (false: no
-- limit), limits = {max_line, max_header_bytes, max_headers} for the trailer section}
local M_RES <const>, M_HOOK <const> = 10, 10
local M_BEFORE <const>, M_LEFT <const>, M_PENDING <const>, M_TOTAL <const> = 11, 12, 13, 14
local M_AFTER <const>, M_CFG <const> = 15, 16

-- req.method and the other public fields of a message, by name.
local REQUEST_FIELDS = {method = M_METHOD, path = M_PATH, query = M_QUERY, version = M_VERSION,
  headers = M_HEADERS, socket = M_SOCK}
local REPLY_FIELDS = {status = M_STATUS, reason = M_REASON, version = M_VERSION,
  headers = M_HEADERS, socket = M_SOCK}

local Body = {}

local function body_end(m)
  m[M_MODE] = false
  local hook = m[M_HOOK]
  if type(hook) == "function" then
    m[M_HOOK] = false
    hook(m)
  end
end

local function body_fail(m, status, msg, code)
  m[M_FAILED] = status or true
  m[M_MODE] = false
  return nil, msg, code
end

-- The next piece of the body (at most want bytes), nil at its end, or nil, message, code.
local function piece(m, want)
  local mode = m[M_MODE]
  if not mode then return nil end
  if m[M_BEFORE] then
    local before = m[M_BEFORE]
    m[M_BEFORE] = nil
    local ok, err, code = before(m)
    if not ok then return body_fail(m, true, err, code) end
  end
  local sock, cfg = m[M_SOCK], m[M_CFG]
  if mode == "chunked" and m[M_LEFT] == 0 then
    local lim = cfg.limits
    local size, err, code = sock:_httpchunk(cfg.timeout, m[M_AFTER], CHUNK_LINE, lim[2], lim[3])
    if not size then
      if size == false then return body_fail(m, err, code, EPROTO) end
      return body_fail(m, nil, err, code)
    end
    m[M_AFTER] = true
    if size == 0 then
      body_end(m)
      return nil
    end
    if cfg.max and m[M_TOTAL] + size > cfg.max then
      return body_fail(m, 413, "body too large", EPROTO)
    end
    m[M_LEFT] = size
  elseif mode == "len" and m[M_LEFT] == 0 then
    body_end(m)
    return nil
  end
  local n = mode == "close" and want or min(m[M_LEFT], want)
  local data, err, code = sock:recv(n)
  if not data then return body_fail(m, nil, err, code) end
  if data == "" then
    if mode == "close" then
      body_end(m)
      return nil
    end
    return body_fail(m, 400, "connection closed in the body", EPROTO)
  end
  if mode ~= "close" then m[M_LEFT] = m[M_LEFT] - #data end
  m[M_TOTAL] = m[M_TOTAL] + #data
  if mode == "len" and m[M_LEFT] == 0 then body_end(m) end
  return data
end

-- The rest of the body as one string ("" when it has ended).
local function read_all(m)
  local parts, n = {}, 0
  local pending = m[M_PENDING]
  if pending and pending ~= "" then
    parts[1], n, m[M_PENDING] = pending, 1, ""
  end
  if m[M_MODE] == "len" and n == 0 and m[M_LEFT] > 0 and not m[M_BEFORE] then
    local data, err, code = m[M_SOCK]:read(m[M_LEFT]) -- the common case: one read, no table
    if not data or #data < m[M_LEFT] then
      return body_fail(m, data and 400, data and "connection closed in the body" or err,
        data and EPROTO or code)
    end
    m[M_TOTAL], m[M_LEFT] = m[M_TOTAL] + #data, 0
    body_end(m)
    return data
  end
  while true do
    local data, err, code = piece(m, PIECE)
    if not data then
      if err then return nil, err, code end
      return concat(parts, "", 1, n)
    end
    n = n + 1
    parts[n] = data
  end
end

-- Reads until m[M_PENDING] holds at least n bytes or the body ends: nil, message, code on failure.
local function gather(m, n)
  local have = m[M_PENDING] or ""
  if #have >= n then return true end
  local parts, k = {have}, 1
  local total = #have
  while total < n do
    local data, err, code = piece(m, PIECE)
    if not data then
      if k > 1 then m[M_PENDING] = concat(parts, "", 1, k) end
      if err then return nil, err, code end
      return true
    end
    k = k + 1
    parts[k] = data
    total = total + #data
  end
  m[M_PENDING] = concat(parts, "", 1, k)
  return true
end

local function read_count(m, n)
  local ok, err, code = gather(m, n)
  if not ok then return nil, err, code end
  local p = m[M_PENDING] or ""
  if p == "" then
    if n == 0 and m[M_MODE] then return "" end
    return nil
  end
  m[M_PENDING] = p:sub(n + 1)
  return p:sub(1, n)
end

local function read_line(m, keep)
  local p = m[M_PENDING] or ""
  local from = 1
  while true do
    local nl = p:find("\n", from, true)
    if nl then
      m[M_PENDING] = p:sub(nl + 1)
      return p:sub(1, keep and nl or nl - 1)
    end
    from = #p + 1
    local data, err, code = piece(m, PIECE)
    if not data then
      if err then
        m[M_PENDING] = p
        return nil, err, code
      end
      if p == "" then return nil end -- (and no slot written into a bodiless request)
      m[M_PENDING] = ""
      return p
    end
    p = p .. data
  end
end

-- The numeral shapes file:read("n") reads, longest first.
local NUMERALS = {"^%s*[%+%-]?0[xX][%x%.]+[pP][%+%-]?%d+", "^%s*[%+%-]?0[xX][%x%.]+",
  "^%s*[%+%-]?[%d%.]+[eE][%+%-]?%d+", "^%s*[%+%-]?[%d%.]+"}
local MAXNUMERAL = 200

-- read("n"): blanks and a numeral as a number; nil when none (its bytes are consumed).
local function read_number(m)
  local ok, err, code = gather(m, MAXNUMERAL)
  if not ok then return nil, err, code end
  local p = m[M_PENDING] or ""
  for _, shape in ipairs(NUMERALS) do
    local text = p:match(shape)
    if text then
      m[M_PENDING] = p:sub(#text + 1)
      return tonumber(text)
    end
  end
  if p ~= "" then m[M_PENDING] = p:gsub("^%s*", "") end
  return nil
end

local function read_format(m, fmt)
  if type(fmt) == "number" then return read_count(m, fmt) end
  fmt = fmt:gsub("^%*", "")
  if fmt == "a" then return read_all(m) end
  if fmt == "n" then return read_number(m) end
  return read_line(m, fmt == "L")
end

-- m:read(...): formats as s:read takes them ("l", "L", "a", "n", a count).
function Body.read(m, ...)
  local n = select("#", ...)
  if n == 0 then return read_line(m, false) end
  for i = 1, n do
    local fmt = select(i, ...)
    local ok = (type(fmt) == "number" and tointeger(fmt) and fmt >= 0)
      or (type(fmt) == "string" and (fmt:match("^%*?[lLan]$") ~= nil))
    if not ok then argerror(i + 1, "read", "invalid format") end
  end
  if n == 1 then return read_format(m, (...)) end
  local out = {}
  for i = 1, n do
    local v, err, code = read_format(m, (select(i, ...)))
    if v == nil then
      out[i] = nil
      if err then return nil, err, code end
      return table.unpack(out, 1, i)
    end
    out[i] = v
  end
  return table.unpack(out, 1, n)
end

-- m:body(): the whole (rest of the) body as a string.
function Body.body(m)
  return read_all(m)
end

-- The M_MODE and M_LEFT of a body of length bodylen (C's encoding).
local function body_mode(bodylen)
  if bodylen == BODY_CHUNKED then return "chunked", 0 end
  if bodylen == BODY_TO_CLOSE then return "close", 0 end
  if bodylen > 0 then return "len", bodylen end
  return false, 0
end

-------------------------------------------------------------------------------- server

-- The __index of messages: public fields from their slots, rawheaders made once, methods.
local function message_index(fields, methods)
  return function(m, k)
    local i = fields[k]
    if i then
      local v = rawget(m, i)
      if v == false and i == M_HEADERS then -- made when first asked for (src/http.c)
        v = headers_of(rawget(m, M_RAW), HEADERS)
        rawset(m, M_HEADERS, v)
      end
      return v
    end
    if k == "rawheaders" then
      local t = rawheaders(rawget(m, M_RAW))
      rawset(m, "rawheaders", t)
      return t
    end
    return methods[k]
  end
end

local Request = {read = Body.read, body = Body.body}
Request.__index = message_index(REQUEST_FIELDS, Request)

-- The slots of a response object.
-- R_KEEP: false when the connection ends after the response, else the tails of a head that
-- keeps it (tail_keep, or tail_keep10 for HTTP/1.0's keep-alive); it only ever goes to false.
local R_REQ <const>, R_SOCK <const>, R_CODE <const>, R_HS <const>, R_KEEP <const> = 1, 2, 3, 4, 5
local R_STARTED <const>, R_FINISHED <const>, R_LENGTH <const>, R_TE <const> = 6, 7, 8, 9
local R_CHUNKED <const>, R_NOBODY <const>, R_BROKEN <const> = 10, 11, 12
-- R_PLAIN: finish may take its one-write path without the checks of start -- a request
-- without a body, not HEAD, and neither Content-Length, Transfer-Encoding nor a status
-- without a body (1xx, 204, 304) set; false whenever one of those may have come (status(),
-- header()), which only sends finish the longer way.
local R_DETACHED <const>, R_PLAIN <const> = 13, 14
-- R_SENT: body bytes sent so far, counted only against a Content-Length the handler set.
local R_SENT <const> = 15

local Response = {}
Response.__index = Response

local function checkres(res, fname)
  if getmetatable(res) ~= Response then argerror(1, fname, "response expected", 3) end
end

local function token(s)
  return type(s) == "string" and s ~= "" and not s:find("[^%w!#$%%&'*+%-.^_`|~]")
end

function Response:status(code)
  checkres(self, "status")
  local c = tointeger(code)
  if not c or c < 100 or c > 999 then argerror(2, "status", "status code expected") end
  if self[R_STARTED] then error("status: response already started", 2) end
  self[R_CODE] = c
  if c < 200 or c == 204 or c == 304 then self[R_PLAIN] = false end
  return self
end

-- Field names checked once: a server sends the same few names again and again.
local good_names, n_good = {}, 0
local function good_name(name)
  if good_names[name] then return true end
  if not token(name) then return false end
  if n_good < 1000 then
    good_names[name], n_good = true, n_good + 1
  end
  return true
end

-- The fields the server itself acts on: Content-Length, Connection, Transfer-Encoding.
local SPECIAL = {["content-length"] = true, connection = true, ["transfer-encoding"] = true}

local function special_field(res, l, value)
  res[R_PLAIN] = false
  if l == "content-length" then
    res[R_LENGTH] = tointeger(tonumber(value)) or false
  elseif l == "connection" and value:lower():find("close", 1, true) then
    res[R_KEEP] = false
  elseif l == "transfer-encoding" then
    res[R_TE] = true
  end
end

-- "Name: value\r\n" of the fields header() has checked, by name and value, for the names the
-- server does not act on: a handler sends the same few fields again and again, and a hit spares
-- the checks and the concatenation (an interned string, hashed).  At most 1000 lines are
-- kept.
local field_lines, n_lines = {}, 0

-- The checks of header() for a field not seen before (seen ones are known good): its line.
local function check_field(res, name, value)
  checkres(res, "header")
  if type(name) ~= "string" or not good_name(name) then
    argerror(2, "header", "invalid header name", 3)
  end
  if type(value) == "number" then value = tostring(value) end
  if type(value) ~= "string" then
    argerror(3, "header", "string expected, got " .. type(value), 3)
  end
  if value:find("[%z\r\n]") then argerror(3, "header", "invalid header value", 3) end
  local line = name .. ": " .. value .. "\r\n"
  local l = name:lower()
  if SPECIAL[l] then
    if res[R_STARTED] then error("header: response already started", 3) end
    special_field(res, l, value)
  elseif n_lines < 1000 then
    local lines = field_lines[name]
    if not lines then
      lines = {}
      field_lines[name] = lines
    end
    lines[value], n_lines = line, n_lines + 1
  end
  return line
end

function Response:header(name, value)
  local lines = field_lines[name]
  local line = lines and lines[value]
  if not line then line = check_field(self, name, value) end
  if self[R_STARTED] then error("header: response already started", 2) end
  local hs = self[R_HS]
  self[R_HS] = hs == "" and line or hs .. line
  return self
end

-- Whether a response with this status and method has a body at all (RFC 9112 6.3).
local function bodiless(code, head)
  return head or code < 200 or code == 204 or code == 304
end

-- The head of the response as one string; chunked says whether the body goes chunked.
local function head_text(res, chunked)
  local connection = not res[R_KEEP] and "Connection: close\r\n\r\n"
    or res[R_KEEP] == tail_keep10 and "Connection: keep-alive\r\n\r\n" or "\r\n"
  return status_lines[res[R_CODE]] .. http_date() .. res[R_HS]
    .. (chunked and "Transfer-Encoding: chunked\r\n" or "") .. connection
end

-- Whether a body the handler leaves unread will be read to its end after the response (a
-- small Content-Length body), keeping the connection; else the response says close.
local DRAIN_MAX = 256 * 1024
local function drainable(req)
  return req[M_MODE] == "len" and not req[M_BEFORE] and req[M_LEFT] <= DRAIN_MAX
end

-- Methods of csock's sockets, called as functions: a method call on a userdata looks the name
-- up through its metatable every time.  Set by http.server from its listener (every csock
-- socket shares one metatable); what uses them runs in a server.
local sock_write, sock_settimeout, sock_close, sock_httpreq, sock_accept

local function res_fail(res, err, code)
  res[R_KEEP] = false
  res[R_BROKEN] = true
  return nil, err, code
end

-- Counts n body bytes against the Content-Length the handler set.
local function count_body(res, n)
  res[R_SENT] = (res[R_SENT] or 0) + n
end

-- A body longer or shorter than the Content-Length the handler set breaks the framing: the
-- connection ends after the response, so that a client sees the body end where it waited for
-- more, and no extra bytes are read as the next response.
local function length_checked(res)
  local want = res[R_LENGTH]
  if want and not res[R_NOBODY] and (res[R_SENT] or 0) ~= want then res[R_KEEP] = false end
  return res
end

-- Sends the head (with the first data, in one write); decides chunked or close-delimited.
local function start(res, sized, ...)
  res[R_STARTED] = true
  local code, req = res[R_CODE], res[R_REQ]
  if req[M_FAILED] then res[R_KEEP] = false end -- the framing is lost: no next request
  if req[M_MODE] and not drainable(req) then
    res[R_KEEP] = false -- a body left unread that will not be drained either
  end
  local head = req[M_METHOD] == "HEAD"
  if not sized and not res[R_LENGTH] and not res[R_TE] and not bodiless(code, false) then
    if req[M_VERSION] == "1.1" then
      res[R_CHUNKED] = true
    else
      res[R_KEEP] = false -- HTTP/1.0: the body ends when the connection does
    end
  end
  local text = head_text(res, res[R_CHUNKED])
  if head or bodiless(code, false) then
    res[R_NOBODY] = true
    local ok, err, ecode = res[R_SOCK]:write(text)
    if not ok then return res_fail(res, err, ecode) end
    return res
  end
  return res:_send(text, ...)
end

-- Writes pieces of the body (framed when chunked) after the prefix text.
function Response:_send(prefix, ...)
  local n, size = select("#", ...), 0
  if n == 1 and not self[R_CHUNKED] and type(...) == "string" then -- one write, no table
    if self[R_LENGTH] then count_body(self, #(...)) end
    local ok, err, code = sock_write(self[R_SOCK], prefix, ...)
    if not ok then return res_fail(self, err, code) end
    return self
  end
  local parts = {prefix}
  for i = 1, n do
    local v = select(i, ...)
    if type(v) == "number" then v = tostring(v) end
    if type(v) ~= "string" then argerror(i + 1, "write", "string expected, got " .. type(v), 3) end
    parts[#parts + 1] = v
    size = size + #v
  end
  if self[R_LENGTH] then count_body(self, size) end
  if self[R_CHUNKED] and size > 0 then
    parts[1] = prefix .. format("%x\r\n", size)
    parts[#parts + 1] = "\r\n"
  end
  local ok, err, code = self[R_SOCK]:write(concat(parts))
  if not ok then return res_fail(self, err, code) end
  return self
end

function Response:write(...)
  checkres(self, "write")
  local finished = self[R_FINISHED]
  if finished then
    error(finished == true and "write: response already finished" or "write: response detached", 2)
  end
  if not self[R_STARTED] then return start(self, false, ...) end
  if self[R_NOBODY] or self[R_BROKEN] then return self end
  return self:_send("", ...)
end

function Response:finish(body)
  if body ~= nil and type(body) ~= "string" then
    if type(body) == "number" then
      body = tostring(body)
    else
      argerror(2, "finish", "string expected, got " .. type(body))
    end
  end
  if self[R_FINISHED] then return self end -- finished, or detached
  self[R_FINISHED] = true
  if not self[R_STARTED] then
    body = body or ""
    local code = self[R_CODE]
    if not self[R_PLAIN] and (self[R_LENGTH] or self[R_TE] or code < 200 or code == 204
        or code == 304 or self[R_REQ][M_METHOD] == "HEAD" or self[R_REQ][M_FAILED]
        or self[R_REQ][M_MODE]) then
      if not self[R_LENGTH] and not self[R_TE] and not bodiless(code, false) then
        self[R_HS] = self[R_HS] .. content_length[#body]
      end
      local ok, err, ecode = start(self, true, body)
      if not ok then return ok, err, ecode end
      return length_checked(self)
    end
    -- the common case: status line, fields and body in one write, nothing concatenated
    self[R_STARTED] = true
    local tail = self[R_KEEP] or tail_close
    if time() ~= date_time then http_date() end
    local ok, err, ecode = sock_write(self[R_SOCK], heads[code] or status_date(code), self[R_HS],
      tail[#body], body)
    if not ok then return res_fail(self, err, ecode) end
    return self
  end
  if self[R_NOBODY] or self[R_BROKEN] then return self end
  if self[R_CHUNKED] then
    local ok, err, code
    if body and body ~= "" then
      ok, err, code = self[R_SOCK]:write(format("%x\r\n", #body), body, "\r\n0\r\n\r\n")
    else
      ok, err, code = self[R_SOCK]:write("0\r\n\r\n")
    end
    if not ok then return res_fail(self, err, code) end
    return self
  end
  if body and body ~= "" then
    local ok, err, code = self:_send("", body)
    if not ok then return ok, err, code end
  end
  return length_checked(self)
end

-- The bytes of the file res:sendfile sends: from offset, count of them at most, to its end.
local function file_span(f, offset, count)
  local at = f:seek()
  local size = f:seek("end")
  if not (at and size) then return nil end
  f:seek("set", at)
  local rest = size > offset and size - offset or 0
  return count and min(count, rest) or rest
end

local function check_span(offset, count)
  local o = offset == nil and 0 or tointeger(offset)
  if not o or o < 0 then argerror(3, "sendfile", "offset must be a non-negative integer", 3) end
  local c = count
  if c ~= nil then
    c = tointeger(c)
    if not c or c < 0 then argerror(4, "sendfile", "count must be a non-negative integer", 3) end
  end
  return o, c
end

-- The io file of res:sendfile's first argument: the file itself, or the path opened (then
-- also returned as the one to close); nil, message, errno when the path cannot be opened.
local function open_file(file)
  if type(file) == "string" then
    local f, err, code = io.open(file, "rb")
    if not f then return nil, err, code end
    if not f:read(0) and f:seek("end") ~= 0 then -- a directory reads nil (EISDIR)
      f:close()
      return nil, file .. ": not a regular file", csock.EISDIR or 21
    end
    return f, f
  end
  if io.type(file) ~= "file" then
    argerror(2, "sendfile", (io.type(file) == "closed file" and "file is closed")
      or "file or path expected, got " .. type(file), 3)
  end
  return file
end

-- Sends span bytes of f from offset as body bytes, in a chunk of their own when chunked.
local function send_span(res, f, offset, span)
  if res[R_NOBODY] or res[R_BROKEN] or span == 0 then return res end
  local sock = res[R_SOCK]
  if res[R_CHUNKED] then
    local ok, err, code = sock:write(format("%x\r\n", span))
    if not ok then return res_fail(res, err, code) end
  end
  local sent, err, code = sock:sendfile(f, offset, span)
  if not sent then return res_fail(res, err, code) end
  if sent < span then return res_fail(res, "file ended early", csock.EIO) end
  if res[R_LENGTH] then count_body(res, span) end
  if res[R_CHUNKED] then
    local ok, werr, wcode = sock:write("\r\n")
    if not ok then return res_fail(res, werr, wcode) end
  end
  return res
end

--- res:sendfile(file [, offset [, count]]): body bytes from a file (an io file or a path), with
-- s:sendfile.  Before the response started and with no Content-Length set, the file is the whole
-- body: the head gets its Content-Length and the response is finished.  Otherwise the bytes are
-- part of the body (a chunk of their own when chunked).
function Response:sendfile(file, offset, count)
  checkres(self, "sendfile")
  local finished = self[R_FINISHED]
  if finished then
    error(finished == true and "sendfile: response already finished"
      or "sendfile: response detached", 2)
  end
  local off, cnt = check_span(offset, count)
  local f, mine, ecode = open_file(file)
  if not f then return nil, mine, ecode end
  local _ <close> = mine
  local span = file_span(f, off, cnt)
  if not span then return nil, "file cannot seek", csock.ESPIPE or 29 end
  if self[R_STARTED] then return send_span(self, f, off, span) end
  local whole = not self[R_LENGTH] and not self[R_TE]
  if whole and not bodiless(self[R_CODE], false) then
    self[R_HS] = self[R_HS] .. content_length[span]
  end
  local ok, err, code = start(self, true)
  if not ok then return nil, err, code end
  if whole then self[R_FINISHED] = true end
  return send_span(self, f, off, span)
end

-- Hands the connection to the caller (a protocol switch): the server writes and reads no more.
function Response:detach()
  checkres(self, "detach")
  self[R_DETACHED] = true
  -- a detached response counts as finished for finish, write and sendfile, which tell the
  -- two apart by this value (true: finished before it was detached)
  if not self[R_FINISHED] then self[R_FINISHED] = "detached" end
  self[R_KEEP] = false
  return self[R_SOCK]
end

local function send_error(sock, code, text)
  local body = (REASONS[code] or "Error") .. (text and (": " .. text) or "") .. "\n"
  sock:write(status_lines[code], http_date(), "Content-Type: text/plain\r\n",
    "Content-Length: ", tostring(#body), "\r\nConnection: close\r\n\r\n", body)
end

local function check_opts(opts, fname)
  if type(opts) ~= "table" then argerror(3, fname, "table expected, got " .. type(opts), 3) end
  local o = {}
  for k, v in pairs(DEFAULTS) do
    local given = opts[k]
    if given ~= nil and (type(given) ~= "number" or given < 0 or given ~= given) then
      argerror(3, fname, k .. " must be a non-negative number", 3)
    end
    o[k] = given or v
  end
  -- the parser in C takes the limits as integers: a fraction is dropped, and math.huge (no
  -- limit) is 2^62, far past any buffer
  for _, k in ipairs({"max_line", "max_header_bytes", "max_headers", "max_body"}) do
    o[k] = tointeger(math.floor(math.min(o[k], 1 << 62)))
  end
  o.max_line, o.max_header_bytes = math.max(1, o.max_line), math.max(1, o.max_header_bytes)
  o.max_headers = math.max(1, o.max_headers)
  o.tls = opts.tls
  if o.tls ~= nil and type(o.tls) ~= "userdata" then
    argerror(3, fname, "tls must be a TLS context", 3)
  end
  o.limits = {o.max_line, o.max_header_bytes, o.max_headers}
  o.cfg = {timeout = o.body_timeout, max = o.max_body, limits = o.limits}
  return o
end

local function send_continue(req)
  local res = req[M_RES]
  if res[R_STARTED] then return true end
  return req[M_SOCK]:write("HTTP/1.1 100 Continue\r\n\r\n")
end

-- The body left unread after the handler: read it to keep the connection, or give up on it.
local function drain(req)
  if req[M_MODE] == false then return not req[M_FAILED] end
  if req[M_BEFORE] then return false end -- never asked for: the client may not send it
  if req[M_MODE] ~= "len" or req[M_LEFT] > DRAIN_MAX then return false end
  while true do
    local data, err = piece(req, PIECE)
    if not data then return err == nil end
  end
end

local function log_error(err)
  io.stderr:write("csock.http: handler error: ", tostring(err), "\n")
end

-- After the handler, when it was not the common case (finished, no body): whether the
-- connection goes on, and whether the handler took it (detach).
local function after_handler(c, req, res)
  if res[R_DETACHED] then return false, true end
  if req[M_FAILED] and not res[R_STARTED] then
    local st = req[M_FAILED]
    send_error(c, type(st) == "number" and st or 400)
    return false
  end
  if not res[R_FINISHED] then res:finish() end
  if res[R_BROKEN] or not res[R_KEEP] then return false end
  if req[M_MODE] == false then return not req[M_FAILED] end
  return drain(req)
end

-- A head _httpreq failed on or the server will not take: the answer, if any (the connection
-- is done: closed by the client, timed out, or answered with an error status).
local function refuse(c, method, status, msg, partial, bodylen, max_body)
  if not method then
    if method == false then
      send_error(c, status, msg) -- false, status, message
    elseif msg == ETIMEDOUT and partial then
      send_error(c, 408)
    end
  elseif bodylen > max_body then
    send_error(c, 413)
  else
    send_error(c, 417)
  end
end

-- The requests of a connection, one after the other.  One function with the options in locals
-- and the common case of each step inline: a hello request is short enough that the calls
-- and table lookups of a split-up version show in its cost.
-- A connection's record (st), an array as requests and responses are: the response in flight
-- (false between requests), the connection's task, whether the server has forgotten it.
local ST_BUSY <const>, ST_TASK <const>, ST_GONE <const> = 1, 2, 3

local function serve_requests(srv, c, st)
  local o, handler = srv.opts, srv.handler
  if o.tls then
    sock_settimeout(c, o.header_timeout)
    if not c:starttls(o.tls) then return end
  end
  sock_settimeout(c, o.body_timeout)
  local idle, timeout, max_line, max_bytes, max_fields = o.header_timeout, o.header_timeout,
    o.max_line, o.max_header_bytes, o.max_headers
  local max_body, cfg, idle_timeout = o.max_body, o.cfg, o.idle_timeout
  local httpreq = sock_httpreq
  local detached -- true once the handler took the connection (res:detach)
  -- the first request is read even when the server is closing; the loop ends after a
  -- response when it is (below)
  while true do
    local method, path, query, version, headers, raw, bodylen, flags =
      httpreq(c, idle, timeout, max_line, max_bytes, max_fields)
    if not method or bodylen > max_body or flags & F_EXPECT_OTHER ~= 0 then
      return refuse(c, method, path, query, version, bodylen, max_body)
    end
    idle = idle_timeout -- after the first request, the wait for the next is idle time
    local req, plain
    if bodylen == 0 then -- no body: none of its slots
      plain = method ~= "HEAD"
      req = setmetatable({method, path, query, version, headers, c, raw, false, false}, Request)
    else
      plain = false
      local mode, left = body_mode(bodylen)
      req = setmetatable({method, path, query, version, headers, c, raw,
        mode, false, false, false, left, "", 0, false, cfg}, Request)
    end
    local keep = KEEP_TAILS[flags & (F_KEEP | F_KEEP10)]
    local res = setmetatable({req, c, 200, "", keep, false, false, false, false, false, false,
      false, false, plain}, Response)
    if flags & F_CONTINUE ~= 0 and version == "1.1" and req[M_MODE] then
      req[M_RES], req[M_BEFORE] = res, send_continue
    end
    st[ST_BUSY] = res
    if srv.closing then res[R_KEEP] = false end
    handler(req, res) -- its error ends the connection: conn_task catches it (conn_failed)
    if res[R_FINISHED] and not (res[R_DETACHED] or res[R_BROKEN])
        and (bodylen == 0 or req[M_MODE] == false and not req[M_FAILED]) then
      keep = res[R_KEEP] -- the common case, Connection: close or not
    else
      keep, detached = after_handler(c, req, res)
    end
    st[ST_BUSY] = false
    if srv.closing then
      srv.cond:broadcast()
      return detached
    end
    if not keep then return detached end
  end
end

local Server = {}
Server.__index = Server

-- Takes a connection off the server's books (once, whoever comes first: its task or close).
local function forget(srv, c, st)
  if st[ST_GONE] then return end
  st[ST_GONE] = true
  srv.conns[c] = nil
  local n = srv.nconns - 1
  srv.nconns = n
  -- join waits for the end of accepting and of every connection, close for the busy ones to
  -- end: nobody else listens, and a wake-up per connection would switch to the joining task and
  -- back for nothing (accept_loop wakes them when it ends)
  if srv.closing or (n == 0 and not srv.accepting) then srv.cond:broadcast() end
end

-- An error out of serve_requests: the handler's when a response is in flight (ST_BUSY), answered
-- with 500 unless the response had started or was detached (the connection is the handler's
-- then, and so is its error); whether the connection was detached.
local function conn_failed(c, st, err)
  local res = st[ST_BUSY]
  if res and res[R_DETACHED] then
    st[ST_BUSY] = false
    return true
  end
  log_error(err)
  if res then
    st[ST_BUSY] = false
    if not res[R_STARTED] then send_error(c, 500) end
  end
  return false
end

-- One protected call per connection rather than one per request: a handler's error ends its
-- connection anyway, and the handler runs as a plain Lua call (no C boundary per request).
local function conn_task(srv, c)
  local st = {false, current(), false}
  srv.conns[c] = st
  srv.nconns = srv.nconns + 1
  local ok, r = xpcall(serve_requests, traceback, srv, c, st)
  if not ok then r = conn_failed(c, st, r) end
  forget(srv, c, st)
  if not r then sock_close(c) end
end

-- accept failures that pass (accept has paused 50 ms before reporting them); any other
-- (the listener closed, a socket that does not listen) ends the server.
local ACCEPT_PASSING = {[csock.EMFILE] = true, [csock.ENFILE] = true, [csock.ENOBUFS] = true,
  [csock.ENOMEM] = true}

local function accept_loop(srv)
  local l = srv.listener
  while not srv.closing do
    local c, err, code = sock_accept(l)
    if c then
      spawn(conn_task, srv, c)
    elseif srv.closing or not ACCEPT_PASSING[code] then
      if not srv.closing then io.stderr:write("csock.http: accept: ", tostring(err), "\n") end
      break
    end
  end
  srv.accepting = false
  srv.cond:broadcast()
end

--- http.server(listener, handler [, opts]): serves in a task of its own; returns the server.
function http.server(listener, handler, opts)
  if (getmetatable(listener) or {}).__name ~= "csock.socket" then
    argerror(1, "server", "listening socket expected, got " .. type(listener))
  end
  if type(handler) ~= "function" then
    argerror(2, "server", "function expected, got " .. type(handler))
  end
  local o = check_opts(opts == nil and {} or opts, "server")
  local methods = getmetatable(listener).__index
  sock_write, sock_settimeout, sock_close = methods.write, methods.settimeout, methods.close
  sock_httpreq, sock_accept = methods._httpreq, methods._accept
  if o.tls and not listener.starttls then argerror(3, "server", "TLS is not available") end
  local srv = setmetatable({listener = listener, handler = handler, opts = o, conns = {},
    nconns = 0, closing = false, accepting = true, cond = csock.cond()}, Server)
  srv.task = spawn(accept_loop, srv)
  return srv
end

-- Waits until the server has stopped accepting and every connection has ended.
function Server:join()
  while self.accepting or self.nconns > 0 do self.cond:wait() end
  return true
end

-- Busy connections other than the one the caller runs in.
local function busy_others(srv, me)
  local n = 0
  for _, st in pairs(srv.conns) do
    if st[ST_BUSY] and st[ST_TASK] ~= me then n = n + 1 end
  end
  return n
end

--- srv:close([grace]): stops accepting, closes idle connections, lets requests in flight finish
-- for up to grace seconds (10) and then cuts them off.  Returns once that is done.
function Server:close(grace)
  if grace ~= nil and (type(grace) ~= "number" or grace < 0 or grace ~= grace) then
    argerror(2, "close", "grace must be a non-negative number")
  end
  grace = grace or 10
  if not self.closing then
    self.closing = true
    self.listener:close()
    for c, st in pairs(self.conns) do
      if st[ST_BUSY] then
        st[ST_BUSY][R_KEEP] = false -- its response (if not begun) says Connection: close
      else
        c:close()
      end
    end
  end
  local me = csock.current()
  local deadline = csock.now() + grace
  while busy_others(self, me) > 0 do
    local left = deadline - csock.now()
    if left <= 0 then break end
    self.cond:wait(left)
  end
  for c, st in pairs(self.conns) do
    if st[ST_TASK] ~= me then
      st[ST_TASK]:cancel()
      c:close()
      forget(self, c, st)
    end
  end
  return true
end

--- http.serve(listener, handler [, opts]): http.server(...):join().
function http.serve(listener, handler, opts)
  return http.server(listener, handler, opts):join()
end

http.websocket = function(req, res, opts) return require("csock.websocket").accept(req, res, opts) end
http.websocket_connect = function(url, opts)
  return require("csock.websocket").connect(url, opts)
end

-------------------------------------------------------------------------------- client

local CLIENT_LIMITS = {64 * 1024, 256 * 1024, 500}
local POOL_MAX = 16 -- idle connections kept per key
local pool = {}     -- key -> array of idle connections

local Reply = {read = Body.read, body = Body.body}
Reply.__index = message_index(REPLY_FIELDS, Reply)

function Reply.close(res)
  if res[M_SOCK] then res[M_SOCK]:close() end
  res[M_MODE] = false
end

local function parse_url(url)
  local scheme, authority, rest = url:match("^(%a[%w+.-]*)://([^/?#]*)(.*)$")
  if not scheme then return nil, "invalid URL" end
  scheme = scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then return nil, "unsupported scheme: " .. scheme end
  authority = authority:gsub("^.*@", "")
  local host, port = authority:match("^%[([%x:.%%%w]+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
  if not host or host == "" then return nil, "invalid URL" end
  port = tointeger(tonumber(port)) or (scheme == "https" and 443 or 80)
  if port < 1 or port > 65535 then return nil, "invalid port in URL" end
  rest = rest:gsub("#.*$", "")
  if rest == "" or rest:sub(1, 1) == "?" then rest = "/" .. rest end
  if rest:find("[%s%z]") then return nil, "invalid URL" end
  return {scheme = scheme, host = host, port = port, target = rest,
    authority = authority:find(":%d+$") and authority or host:find(":", 1, true)
      and ("[" .. host .. "]") or host}
end

local default_tls
local function tls_context(opts)
  if opts.tls then return opts.tls end
  if not csock.tls_context then return nil, "https is not available (no TLS in csock)" end
  default_tls = default_tls or csock.tls_context({mode = "client"})
  return default_tls
end

local function pool_key(u, ctx)
  return u.scheme .. "://" .. u.host .. ":" .. u.port .. (ctx and (" " .. tostring(ctx)) or "")
end

local function pool_get(key)
  local list = pool[key]
  local c = list and list[#list]
  if c then list[#list] = nil end
  return c
end

local function pool_put(key, c)
  local list = pool[key]
  if not list then
    list = {}
    pool[key] = list
  end
  if #list >= POOL_MAX then
    c:close()
  else
    list[#list + 1] = c
  end
end

local function connect(u, opts)
  local ctx
  if u.scheme == "https" then
    local err
    ctx, err = tls_context(opts)
    if not ctx then return nil, err, EPROTO end
  end
  local key = pool_key(u, ctx)
  local c = pool_get(key)
  if c then
    c:settimeout(opts.timeout)
    return c, key, true
  end
  local err, code
  c, err, code = csock.tcp_connect(u.host, u.port, opts.timeout)
  if not c then return nil, err, code end
  if ctx then
    local ok
    ok, err, code = c:starttls(ctx, u.host)
    if not ok then
      c:close()
      return nil, err, code
    end
  end
  return c, key, false
end

local function header_lines(u, method, opts, body)
  local parts = {method, " ", u.target, " HTTP/1.1\r\n"}
  local have = {}
  local h = opts.headers
  if h ~= nil then
    if type(h) ~= "table" then argerror(2, "request", "headers must be a table", 4) end
    for name, value in pairs(h) do
      if not token(name) then argerror(2, "request", "invalid header name", 4) end
      local values = type(value) == "table" and value or {value}
      for _, v in ipairs(values) do
        v = tostring(v)
        if v:find("[%z\r\n]") then argerror(2, "request", "invalid header value", 4) end
        parts[#parts + 1] = name .. ": " .. v .. "\r\n"
      end
      have[name:lower()] = true
    end
  end
  if not have.host then parts[#parts + 1] = "Host: " .. u.authority .. "\r\n" end
  if not have["user-agent"] then parts[#parts + 1] = "User-Agent: csock\r\n" end
  local chunked = false
  if type(body) == "string" then
    if not have["content-length"] then
      if #body > 0 or (method ~= "GET" and method ~= "HEAD") then
        parts[#parts + 1] = "Content-Length: " .. #body .. "\r\n"
      end
    end
  elseif body ~= nil and not have["content-length"] then
    chunked = true
    if not have["transfer-encoding"] then parts[#parts + 1] = "Transfer-Encoding: chunked\r\n" end
  end
  parts[#parts + 1] = "\r\n"
  return concat(parts), chunked
end

local function send_body(c, body, chunked)
  if body == nil then return true end
  if type(body) == "string" then
    if body == "" then return true end
    return c:write(body)
  end
  while true do
    local data = body()
    if data == nil then break end
    if type(data) ~= "string" then return nil, "body reader returned " .. type(data), EPROTO end
    if data ~= "" then
      local ok, err, code
      if chunked then
        ok, err, code = c:write(format("%x\r\n", #data), data, "\r\n")
      else
        ok, err, code = c:write(data)
      end
      if not ok then return nil, err, code end
    end
  end
  if chunked then return c:write("0\r\n\r\n") end
  return true
end

-- One exchange on one connection: the response, or nil, message, code, retry.
local function exchange(u, method, opts, body)
  local c, key, reused = connect(u, opts)
  if not c then return nil, key, reused end
  local head, chunked = header_lines(u, method, opts, body)
  local ok, err, code
  if type(body) == "string" and #body + #head < 65536 then
    ok, err, code = c:write(head, body)
  else
    ok, err, code = c:write(head)
    if ok then ok, err, code = send_body(c, body, chunked) end
  end
  if not ok then
    c:close()
    return nil, err, code, reused
  end
  local status, reason, minor, headers, raw, bodylen, flags
  repeat
    status, reason, minor, headers, raw, bodylen, flags =
      c:_httpres(opts.timeout, opts.timeout, CLIENT_LIMITS[1], CLIENT_LIMITS[2], CLIENT_LIMITS[3])
    if not status then
      c:close()
      if status == false then return nil, format("bad response: %s", minor), EPROTO end
      -- a kept-alive connection the server had closed meanwhile: try a fresh one
      return nil, reason, minor or EPROTO, reused and not headers
    end
  until status >= 200 or status == 101
  if bodiless(status, method == "HEAD") and status ~= 101 then bodylen = 0 end
  local mode, left = body_mode(bodylen)
  local res = setmetatable({status, reason, false, minor == 1 and "1.1" or "1.0", headers, c,
    raw, mode, false, false, false, left, "", 0, false,
    {timeout = opts.timeout, max = false, limits = CLIENT_LIMITS}}, Reply)
  local keep = flags & F_CLOSE == 0 and (minor == 1 or flags & F_KEEPALIVE ~= 0)
  if status == 101 then
    res[M_MODE] = false
    return res
  end
  if bodylen == BODY_TO_CLOSE then keep = false end
  res[M_HOOK] = function(m)
    if keep and not m[M_FAILED] then
      pool_put(key, c)
    else
      c:close()
    end
    m[M_SOCK] = nil
  end
  if not res[M_MODE] then body_end(res) end
  return res
end

local REDIRECTS = {[301] = true, [302] = true, [303] = true, [307] = true, [308] = true}

-- The URL a Location value names, relative to the URL u it came from.
local function resolve(u, loc)
  if loc:match("^%a[%w+.-]*://") then return loc end
  local base = u.scheme .. "://" .. u.authority
  if loc:sub(1, 2) == "//" then return u.scheme .. ":" .. loc end
  if loc:sub(1, 1) == "/" then return base .. loc end
  local dir = u.target:gsub("[?#].*$", ""):match("^(.*/)") or "/"
  return base .. dir .. loc
end

local function check_request_opts(url, opts)
  if type(url) ~= "string" then argerror(1, "request", "string expected, got " .. type(url), 3) end
  if opts == nil then return {} end
  if type(opts) ~= "table" then argerror(2, "request", "table expected, got " .. type(opts), 3) end
  if opts.method ~= nil and not token(opts.method) then
    argerror(2, "request", "method must be a token", 3)
  end
  local b = opts.body
  if b ~= nil and type(b) ~= "string" and type(b) ~= "function" then
    argerror(2, "request", "body must be a string or a function", 3)
  end
  local t = opts.timeout
  if t ~= nil and (type(t) ~= "number" or t < 0 or t ~= t) then
    argerror(2, "request", "timeout must be a non-negative number", 3)
  end
  local r = opts.redirects
  if r ~= nil and (not tointeger(r) or r < 0) then
    argerror(2, "request", "redirects must be a non-negative integer", 3)
  end
  return opts
end

--- http.request(url [, opts]): res, or nil, message, code.
function http.request(url, opts)
  opts = check_request_opts(url, opts)
  local u, err = parse_url(url)
  if not u then argerror(1, "request", err) end
  local method = opts.method and opts.method:upper() or (opts.body ~= nil and "POST" or "GET")
  local body = opts.body
  local left = opts.redirects or 5
  while true do
    local res, code, retry
    res, err, code, retry = exchange(u, method, opts, body)
    if not res and retry and type(body) ~= "function" then
      res, err, code = exchange(u, method, opts, body)
    end
    if not res then return nil, err, code end
    local loc = res.headers.location
    if not (REDIRECTS[res.status] and loc and left > 0) then return res end
    if res.status == 303 or ((res.status == 301 or res.status == 302) and method == "POST") then
      if method ~= "HEAD" then method = "GET" end
      body = nil
    elseif type(body) == "function" then
      return res -- a reader cannot be read twice
    end
    if res[M_MODE] then
      if res[M_MODE] == "len" and res[M_LEFT] <= 65536 then res:body() else res:close() end
    end
    left = left - 1
    u, err = parse_url(resolve(u, loc))
    if not u then return nil, "bad redirect: " .. err, EPROTO end
  end
end

--- Closes the idle connections of the client's pool.
function http.close_idle()
  for key, list in pairs(pool) do
    for _, c in ipairs(list) do c:close() end
    pool[key] = nil
  end
end

return http
