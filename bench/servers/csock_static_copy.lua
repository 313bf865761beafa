-- csock_static_copy.lua ROOT PORT: examples/static.lua's GET without sendfile, for
-- bench/static_file.sh: the file goes through Lua in 64 KiB f:read pieces and res:write
-- (a Content-Length, so unchunked) -- what static.lua did before res:sendfile.
local csock = require "csock"
local http = require "csock.http"

local root, port = arg[1], tonumber(arg[2]) or 0
local PIECE = 64 * 1024

local function serve(req, res)
  local f <close> = req.path:find("..", 1, true) == nil and io.open(root .. req.path, "rb") or nil
  local size = f and f:seek("end")
  if not size then
    res:status(404)
    return res:finish("not found\n")
  end
  f:seek("set")
  res:header("Content-Type", "application/octet-stream")
  res:header("Content-Length", size)
  while true do
    local piece = f:read(PIECE)
    if not piece or not res:write(piece) then break end
  end
  res:finish()
end

local listener = assert(csock.tcp_listen("127.0.0.1", port, 128))
print("listening on 127.0.0.1:" .. listener:getsockname().port)
io.stdout:flush()
http.serve(listener, serve)
