-- server.lua: the stream server of Beej's Guide to Network Programming (server.c), line for line.
--
--   lua5.4 examples/server.lua [port [host]]    or    csock examples/server.lua [port [host]]
--                                               (default 3490 127.0.0.1)
--
-- Plain blocking calls, so it runs the same under lua5.4 and under the csock host. Beej forks a
-- child per connection; this one answers each client in turn, which "Hello, world!" allows.
local csock = require "csock"

local PORT = arg[1] or "3490" -- the port users will be connecting to
local HOST = arg[2] or "127.0.0.1"
local BACKLOG = 10 -- how many pending connections queue will hold

local sockfd
local servinfo = assert(csock.getaddrinfo(HOST, PORT, {socktype = csock.SOCK_STREAM}))

-- loop through all the results and bind to the first we can
for _, p in ipairs(servinfo) do
  local s, err = csock.socket(p.family, p.socktype, p.protocol)
  if not s then
    io.stderr:write("server: socket: ", err, "\n")
  else
    assert(s:setsockopt(csock.SOL_SOCKET, csock.SO_REUSEADDR, 1))
    local ok, berr = s:bind(p.addr, p.port)
    if ok then
      sockfd = s
      break
    end
    s:close()
    io.stderr:write("server: bind: ", berr, "\n")
  end
end

if not sockfd then
  io.stderr:write("server: failed to bind\n")
  os.exit(1)
end

assert(sockfd:listen(BACKLOG))

local me = sockfd:getsockname()
print(("server: waiting for connections on %s:%d..."):format(me.addr, me.port))
io.stdout:flush()

while true do -- main accept() loop
  local new_fd, their_addr = sockfd:accept()
  if not new_fd then
    io.stderr:write("accept: ", their_addr, "\n")
  else
    print("server: got connection from " .. their_addr.addr)
    io.stdout:flush()
    local ok, err = new_fd:send("Hello, world!")
    if not ok then io.stderr:write("send: ", err, "\n") end
    new_fd:close()
  end
end
