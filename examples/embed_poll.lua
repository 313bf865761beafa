-- embed_poll.lua: drive csock tasks from an application's own main loop.
--
--   lua5.4 examples/embed_poll.lua          (plain Lua: no csock.run, no host executable)
--
-- A program that already has a main loop (a game, a GUI toolkit, a simulation) cannot hand
-- control to csock.run. It makes a loop object instead and steps it: each frame does the
-- application's own work, then gives csock the rest of the frame with loop:step(timeout), which
-- runs the ready tasks, waits for socket events up to `timeout` seconds and fires due timers.
-- Here the tasks are an echo server and a client that talks to it over 127.0.0.1; the frame
-- loop ends when every csock task has ended (step returns 0).
--
-- With luv (or any loop that can watch a descriptor), poll loop:fd() for reading and call
-- loop:step() when it is readable: the descriptor also becomes readable when a sleep or a
-- timeout is due, so no periodic timer is needed (docs/runtime.md, "Embedding csock in another
-- loop"). loop:timeout() tells how long the loop can wait.

-- Run from a work tree, find the in-place build (lua/ and csock/core.so next to examples/).
local root = (arg and arg[0] or ""):match("^(.-)/?examples/[^/]*$")
if root and not package.searchpath("csock", package.path) then
  root = root == "" and "." or root
  package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
  package.cpath = root .. "/?.so;" .. package.cpath
end

local csock = require "csock"
io.stdout:setvbuf("line")

local loop <close> = csock.loop()

local server = assert(csock.tcp_listen("127.0.0.1", 0))
local port = server:getsockname().port
print(("listening on 127.0.0.1:%d"):format(port))

-- The echo server: one connection, echoed line by line until the client shuts down.
loop:spawn(function()
  local srv <close> = server
  local c <close> = assert(srv:accept())
  for line in c:lines() do
    assert(c:write(line, "\n"))
  end
end):name("echo server")

-- The client: written in the same blocking style as in a csock script.
loop:spawn(function()
  local c <close> = assert(csock.tcp_connect("127.0.0.1", port, 5))
  for _, message in ipairs({"hello", "from the client task", "of an embedded loop"}) do
    assert(c:write(message, "\n"))
    print("echo: " .. assert(c:read("l")))
    csock.sleep(0.02)                 -- a timer: woken by step(), not by the descriptor
  end
  c:shutdown("w")
  assert(c:read("a") == "")
end):name("client")

-- The application's main loop: 100 frames a second, its own work, then csock's turn.
local FRAME = 0.01
local frames, work = 0, 0
local deadline = csock.now() + 10
while true do
  frames = frames + 1
  local frame_end = csock.now() + FRAME
  for _ = 1, 1000 do work = work + 1 end   -- the application's own work for this frame
  local live = loop:step(math.max(0, frame_end - csock.now()))
  if live == 0 then break end
  if csock.now() > deadline then error("the csock tasks did not end within 10 s") end
end
print(("app: %d frames, %d units of work, every csock task ended"):format(frames, work))
