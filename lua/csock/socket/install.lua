--[[
csock.socket.install: makes csock.socket the `socket` module of this Lua
state, so that code written for LuaSocket runs on csock unchanged:

    csock -l csock.socket.install script.lua
    lua5.4 -l csock.socket.install script.lua     (blocking calls, no loop)

It fills package.loaded.socket and package.loaded["socket.core"] (LuaSocket's
socket.lua is socket.core plus Lua helpers, all of which csock.socket has),
so `require "socket"` and `require "socket.core"` both return csock.socket,
while socket.http, socket.url, ltn12 and mime still load from an installed
LuaSocket.  Returns the module.
]]
local socket = require "csock.socket"

package.loaded.socket = socket
package.loaded["socket.core"] = socket

return socket
