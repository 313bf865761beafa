-- static.lua: a static file server on csock.http.
--
--   csock examples/static.lua [root [port [host]]]      (default . 8080 127.0.0.1)
--
-- GET and HEAD of the files under root; a path naming a directory serves its index.html.
-- Files go out with res:sendfile: a Content-Length from the file's size, and the bytes moved
-- by the kernel (sendfile(2)) on a plain connection, never through Lua strings, so a large file
-- costs no memory. Paths with ".." segments get 400; anything else missing gets 404.
local csock = require "csock"
local http = require "csock.http"

local root = arg[1] or "."
local port, host = tonumber(arg[2]) or 8080, arg[3] or "127.0.0.1"

local TYPES = {
  html = "text/html; charset=utf-8", txt = "text/plain; charset=utf-8", css = "text/css",
  js = "text/javascript", json = "application/json", png = "image/png", jpg = "image/jpeg",
  svg = "image/svg+xml", lua = "text/plain; charset=utf-8",
}

local function unescape(path)
  return (path:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function fail(res, status, text)
  res:status(status)
  res:header("Content-Type", "text/plain")
  res:finish(text .. "\n")
end

-- An open regular file, or nil.
local function open(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local readable = f:read(0) -- nil for a directory (EISDIR), and for an empty file
  local size = f:seek("end")
  if not size or (not readable and size ~= 0) then
    f:close()
    return nil
  end
  return f
end

local function serve(req, res)
  if req.method ~= "GET" and req.method ~= "HEAD" then
    res:header("Allow", "GET, HEAD")
    return fail(res, 405, "method not allowed")
  end
  local path = unescape(req.path)
  if path:find("\0", 1, true) or ("/" .. path .. "/"):find("/%.%./") then
    return fail(res, 400, "bad path")
  end
  if path:sub(-1) == "/" then path = path .. "index.html" end
  local f <close> = open(root .. path)
  if not f then return fail(res, 404, "not found") end
  res:header("Content-Type", TYPES[path:match("%.(%w+)$") or ""] or "application/octet-stream")
  res:sendfile(f) -- the whole body (HEAD: the head alone); a client gone away ends it
end

local listener = assert(csock.tcp_listen(host, port, 128))
local me = listener:getsockname()
print(("listening on %s:%d"):format(me.addr, me.port))
io.stdout:flush()
http.serve(listener, serve)
