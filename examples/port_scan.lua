-- port_scan.lua: find the open TCP ports of a host by connecting to each, many at a time.
--
--   csock examples/port_scan.lua [first [last [host [timeout]]]]
--                                               (default 1 1024 127.0.0.1 0.5)
--
-- Prints "<port>/tcp open" for each port that accepts a connection, in order. A few hundred
-- tasks share the range; a port that neither accepts nor refuses within `timeout` seconds
-- counts as closed.
local csock = require "csock"

local first = tonumber(arg[1]) or 1
local last = tonumber(arg[2]) or 1024
local host = arg[3] or "127.0.0.1"
local timeout = tonumber(arg[4]) or 0.5
local family = host:find(":", 1, true) and csock.AF_INET6 or csock.AF_INET
local WORKERS = 256 -- connections in flight; keeps well below the descriptor limit

local next_port = first
local open = {}

local function probe(port)
  local s <close> = csock.socket(family, csock.SOCK_STREAM)
  s:settimeout(timeout)
  return s:connect(host, port) == true
end

local function worker()
  while next_port <= last do
    local port = next_port
    next_port = port + 1
    if probe(port) then open[#open + 1] = port end
  end
end

local tasks = {}
for i = 1, math.min(WORKERS, last - first + 1) do
  tasks[i] = csock.spawn(worker)
end
for _, t in ipairs(tasks) do
  assert(t:join())
end

table.sort(open)
for _, port in ipairs(open) do
  print(("%d/tcp open"):format(port))
end
