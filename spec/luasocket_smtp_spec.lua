-- LuaSocket's socket.smtp (Debian's lua-socket: socket.tp, ltn12 and mime underneath) sending
-- mail through csock.socket to python3's smtpd, which prints what it received.
local rt = require "support.rt"

-- An SMTP server that writes each message it accepts to stdout between markers.
local SERVER = [[
import sys, warnings, asyncore
warnings.simplefilter("ignore")
import smtpd
class S(smtpd.SMTPServer):
    def process_message(self, peer, mailfrom, rcpttos, data, **kw):
        if isinstance(data, bytes):
            data = data.decode()
        print("FROM %s TO %s" % (mailfrom, ",".join(rcpttos)))
        print(data)
        print("END", flush=True)
srv = S(("127.0.0.1", 0), None)
print("listening on 127.0.0.1:%d" % srv.socket.getsockname()[1], flush=True)
asyncore.loop()
]]

local function has_smtpd()
  return os.execute("env -u LD_PRELOAD python3 -W ignore -c 'import smtpd, asyncore' 2>/dev/null") == true
end

describe("socket.smtp over csock.socket", function()
  local server, smtp, saved

  setup(function()
    if not has_smtpd() then return end
    saved = {}
    for _, m in ipairs {"socket", "socket.core", "socket.smtp", "socket.tp", "socket.headers"} do
      saved[m] = package.loaded[m] or false
      package.loaded[m] = nil
    end
    package.loaded.socket = require "csock.socket"
    smtp = require "socket.smtp"
    server = rt.start({"python3", "-c", SERVER})
  end)

  teardown(function()
    if server then rt.stop(server) end
    for m, v in pairs(saved or {}) do package.loaded[m] = v or nil end
  end)

  it("sends a message with headers and a body", function()
    if not smtp then return pending("python3 has no smtpd module") end
    local ok, err = smtp.send {
      from = "<alice@example.org>",
      rcpt = {"<bob@example.org>", "<carol@example.org>"},
      source = smtp.message {
        headers = {to = "Bob <bob@example.org>", subject = "over csock"},
        body = "Hello from LuaSocket's smtp,\r\nrunning on csock sockets.",
      },
      server = "127.0.0.1",
      port = server.port,
    }
    assert.same({1, nil}, {ok, err})
    local lines = {}
    repeat
      local line = server.pipe:read("l")
      lines[#lines + 1] = line
    until line == nil or line == "END"
    local text = table.concat(lines, "\n")
    assert.equal("FROM alice@example.org TO bob@example.org,carol@example.org", lines[1])
    assert.matches("\nSubject: over csock\n", text, 1, true)
    assert.matches("\nX%-Mailer: LuaSocket 3%.1%.0\n", text)
    assert.matches("\nHello from LuaSocket's smtp,\nrunning on csock sockets.\nEND$", text)
  end)

  it("returns nil and LuaSocket's message when no server listens", function()
    if not smtp then return pending("python3 has no smtpd module") end
    local probe = assert(require("csock").tcp_listen("127.0.0.1", 0))
    local port = probe:getsockname().port
    probe:close()
    local ok, err = smtp.send {
      from = "<alice@example.org>", rcpt = "<bob@example.org>",
      source = smtp.message {body = "x"}, server = "127.0.0.1", port = port,
    }
    assert.same({nil, "connection refused"}, {ok, err})
  end)
end)
