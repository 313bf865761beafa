--[[
spec/support/gcstress.lua - an aggressive collector for `make gcstress`.

Run through LUA_INIT_5_4 (in busted's process and in every lua5.4 or csock
child the specs start) and again by spec/helper.lua before each spec file:
the incremental collector with pause 100 (a new cycle as soon as one ends),
step multiplier 100 and step size 2^0 bytes, so a collection step runs at
every allocation.  Code that keeps a pointer into a Lua object across an
allocation, or a finalizer that frees what a C function still uses, then
fails at once instead of once in a million runs (issue 15).
]]
collectgarbage("incremental", 100, 100, 0)
