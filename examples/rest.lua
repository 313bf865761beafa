-- rest.lua: a small REST-style service on csock.http, routes on method + path, no JSON library.
--
--   csock examples/rest.lua [port [host]]       (default 8080 127.0.0.1)
--
-- A store of notes kept in memory, bodies as plain text:
--   GET    /notes        the ids, one a line
--   POST   /notes        stores the body as a new note: 201 and Location: /notes/ID
--   GET    /notes/ID     the note            (404 if there is none)
--   PUT    /notes/ID     replaces the note   (404 if there is none)
--   DELETE /notes/ID     removes the note: 204
-- Any other method on a known path gets 405 with an Allow field.
local csock = require "csock"
local http = require "csock.http"

local port, host = tonumber(arg[1]) or 8080, arg[2] or "127.0.0.1"

local notes, next_id = {}, 1

local function reply(res, status, text)
  res:status(status)
  res:header("Content-Type", "text/plain")
  res:finish(text)
end

local function list(_, res)
  local ids = {}
  for id in pairs(notes) do ids[#ids + 1] = id end
  table.sort(ids)
  local lines = {}
  for i, id in ipairs(ids) do lines[i] = id .. "\n" end
  reply(res, 200, table.concat(lines))
end

local function create(req, res)
  local body, err = req:body()
  if not body then return reply(res, 400, err .. "\n") end
  local id = next_id
  next_id = next_id + 1
  notes[id] = body
  res:header("Location", "/notes/" .. id)
  reply(res, 201, "created " .. id .. "\n")
end

local function show(_, res, id)
  reply(res, 200, notes[id])
end

local function replace(req, res, id)
  local body, err = req:body()
  if not body then return reply(res, 400, err .. "\n") end
  notes[id] = body
  reply(res, 200, "updated " .. id .. "\n")
end

local function remove(_, res, id)
  notes[id] = nil
  res:status(204)
  res:finish()
end

-- path pattern -> {method = handler}; a handler gets the pattern's capture (the id) as a number
local routes = {
  {"^/notes$", {GET = list, POST = create}},
  {"^/notes/(%d+)$", {GET = show, PUT = replace, DELETE = remove}, needs_note = true},
}

local function allowed(methods)
  local names = {}
  for name in pairs(methods) do names[#names + 1] = name end
  table.sort(names)
  return table.concat(names, ", ")
end

local function dispatch(req, res)
  for _, route in ipairs(routes) do
    local capture = req.path:match(route[1])
    if capture then
      local handler = route[2][req.method]
      if not handler then
        res:header("Allow", allowed(route[2]))
        return reply(res, 405, "method not allowed\n")
      end
      local id = tonumber(capture)
      if route.needs_note and not notes[id] then return reply(res, 404, "no such note\n") end
      return handler(req, res, id)
    end
  end
  reply(res, 404, "not found\n")
end

local listener = assert(csock.tcp_listen(host, port, 128))
local me = listener:getsockname()
print(("listening on %s:%d"):format(me.addr, me.port))
io.stdout:flush()
http.serve(listener, dispatch)
