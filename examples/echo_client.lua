-- echo_client.lua: open some connections to an echo server at once and check the answers.
--
--   csock examples/echo_client.lua [port [host [clients [message]]]]
--                                               (default 7000 127.0.0.1 1 "hello")
--
-- Each client is a task that writes one line, reads it back and prints it. The exit status is 0
-- when every client got its own line back.
local csock = require "csock"

local port = tonumber(arg[1]) or 7000
local host = arg[2] or "127.0.0.1"
local clients = tonumber(arg[3]) or 1
local message = arg[4] or "hello"
local family = host:find(":", 1, true) and csock.AF_INET6 or csock.AF_INET

local function client(i)
  local c <close> = csock.socket(family, csock.SOCK_STREAM)
  c:settimeout(10)
  assert(c:connect(host, port))
  local line = ("%s %d"):format(message, i)
  assert(c:write(line, "\n"))
  local back = assert(c:read("l"))
  assert(back == line, ("client %d: sent %q, got %q"):format(i, line, back))
  print(back)
  return true
end

local tasks = {}
for i = 1, clients do
  tasks[i] = csock.spawn(client, i)
end

local good = 0
for i, t in ipairs(tasks) do
  local ok, err = t:join()
  if ok then
    good = good + 1
  else
    io.stderr:write("client ", i, ": ", tostring(err), "\n")
  end
end
print(("ok %d/%d"):format(good, clients))
os.exit(good == clients and 0 or 1)
