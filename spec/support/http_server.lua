-- spec/support/http_server.lua [name=value ...]: a csock.http server for the specs' outside
-- clients (curl, python3, node).  Prints "listening on 127.0.0.1:PORT", then serves until
-- GET /shutdown?GRACE closes it (the process then ends: "closed" on stdout).
--   /            Hello, World!
--   /echo        "METHOD PATH QUERY VERSION BODYLENGTH\n" and the body
--   /headers     each rawheaders pair as "name: value\n", then "x-multi: <joined>\n"
--   /chunked     three pieces written with res:write, then finish
--   /slow?S      answers after S seconds
--   /ip          the peer's address
local csock = require "csock"
local http = require "csock.http"

local opts = {}
for _, a in ipairs(arg) do
  local k, v = a:match("^([%w_]+)=(.*)$")
  opts[k] = tonumber(v)
end

local l = assert(csock.tcp_listen("127.0.0.1", 0, 128))
print("listening on 127.0.0.1:" .. l:getsockname().port)
io.stdout:flush()

local srv
local routes = {}

routes["/"] = function(_, res)
  res:header("Content-Type", "text/plain")
  res:finish("Hello, World!")
end

routes["/echo"] = function(req, res)
  local body = assert(req:body())
  res:finish(("%s %s %s %s %d\n%s"):format(req.method, req.path, tostring(req.query), req.version,
    #body, body))
end

routes["/headers"] = function(req, res)
  local out = {}
  for _, h in ipairs(req.rawheaders) do out[#out + 1] = h[1] .. ": " .. h[2] .. "\n" end
  out[#out + 1] = "x-multi: " .. tostring(req.headers["X-Multi"]) .. "\n"
  res:finish(table.concat(out))
end

routes["/chunked"] = function(_, res)
  res:write("one,")
  res:write("two,")
  res:write("three")
  res:finish()
end

routes["/slow"] = function(req, res)
  csock.sleep(tonumber(req.query) or 0.5)
  res:finish("slow done")
end

routes["/shutdown"] = function(req, res)
  res:header("Connection", "close")
  res:finish("closing")
  csock.spawn(function()
    srv:close(tonumber(req.query) or 10)
    print("closed")
    io.stdout:flush()
  end)
end

srv = http.server(l, function(req, res)
  local route = routes[req.path]
  if not route then
    res:status(404)
    return res:finish("not found")
  end
  return route(req, res)
end, opts)
srv:join()
