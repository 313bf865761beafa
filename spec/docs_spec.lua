-- The documentation keeps up with the code: every public function of the module, every method of
-- sockets, task handles and loop objects, and every constant has an entry in docs/reference.md,
-- and the man page csock.1 describes every option that `csock -h` prints.
local csock = require "csock"
local rt = require "support.rt"

local slurp = rt.read_file

local function sorted_keys(t, pred)
  local keys = {}
  for k, v in pairs(t) do
    if type(k) == "string" and pred(k, v) then keys[#keys + 1] = k end
  end
  table.sort(keys)
  return keys
end

-- The headings of reference.md: an entry is a heading that shows the call, e.g.
-- "### `csock.socket(domain, type [, protocol])`" or "### `s:bind(host, port)` / `s:bind(path)`".
local reference = slurp("docs/reference.md")
local headings = {}
for line in reference:gmatch("[^\n]+") do
  if line:match("^#+%s") then headings[#headings + 1] = line end
end

local function has_heading(call)
  for _, h in ipairs(headings) do
    if h:find("`" .. call, 1, true) then return true end
  end
  return false
end

-- Every name in `names` that has no heading "`<prefix><name>(".
local function undocumented(prefix, names)
  local missing = {}
  for _, name in ipairs(names) do
    if not has_heading(prefix .. name .. "(") then missing[#missing + 1] = prefix .. name end
  end
  return missing
end

local function methods_of(mt)
  assert.is_table(mt, "metatable expected")
  local index = mt.__index
  assert.is_table(index, "__index of the metatable should be a table of methods")
  return sorted_keys(index, function(_, v) return type(v) == "function" end)
end

describe("docs/reference.md", function()
  it("has an entry for every function of the module", function()
    local funcs = sorted_keys(csock, function(_, v) return type(v) == "function" end)
    assert.is_true(#funcs >= 8, "too few module functions found")
    assert.same({}, undocumented("csock.", funcs))
  end)

  it("has an entry for every socket method", function()
    local s <close> = assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM))
    local names = methods_of(getmetatable(s))
    assert.is_true(#names >= 20, "too few socket methods found")
    assert.same({}, undocumented("s:", names))
  end)

  it("has an entry for every method of task handles", function()
    local names = csock.run(function()
      local t = csock.spawn(function() end)
      local found = methods_of(getmetatable(t))
      t:join()
      return found
    end)
    assert.is_true(#names >= 5, "too few task methods found")
    assert.same({}, undocumented("t:", names))
  end)

  it("has an entry for every method of loop objects (csock.loop)", function()
    if type(csock.loop) ~= "function" then
      pending("csock.loop is not built in")
      return
    end
    local loop = csock.loop()
    local ok, names = pcall(methods_of, getmetatable(loop))
    if loop.close then loop:close() end
    assert(ok, names)
    assert.same({}, undocumented("loop:", names))
  end)

  it("names every constant of the module", function()
    local consts = sorted_keys(csock, function(k, v)
      return math.type(v) == "integer" and k:match("^[A-Z][A-Z0-9_]*$") ~= nil
    end)
    assert.is_true(#consts >= 40, "too few constants found")
    local missing = {}
    for _, name in ipairs(consts) do
      -- a whole word: EAI_FAIL must not count as documented through EAI_FAILED, say
      if not reference:find("%f[%w_]" .. name .. "%f[^%w_]") then missing[#missing + 1] = name end
    end
    assert.same({}, missing)
  end)

  it("documents _VERSION", function()
    assert.is_true(has_heading("csock._VERSION"))
  end)
end)

-- The option tags of the man page: the first word of each line that follows `.TP`, roff escapes
-- undone ("\-w" is "-w"; ".B \-\-" is "--").
local function man_options(text)
  local tags, after_tp = {}, false
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if after_tp then
      local body = line:gsub("^%.[BIR][BIR]?%s+", "")
      local word = body:match('^"([^"]*)"') or body:match("^(%S+)")
      if word then
        word = word:gsub("\\%-", "-"):gsub("\\f[BIRP]", ""):gsub("\\&", "")
        tags[word] = true
      end
    end
    after_tp = line:match("^%.TP") ~= nil
  end
  return tags
end

describe("csock.1", function()
  it("describes every option that csock -h prints", function()
    local r = rt.exec({ rt.BIN, "-h" })
    assert.equal(0, r.status, r.err)
    local printed = {}
    for opt in r.out:gmatch("\n%s+(%-%S*)") do printed[#printed + 1] = opt end
    assert.is_true(#printed >= 8, "csock -h printed too few options:\n" .. r.out)
    local tags = man_options(slurp("csock.1"))
    local missing = {}
    for _, opt in ipairs(printed) do
      if not tags[opt] then missing[#missing + 1] = opt end
    end
    assert.same({}, missing)
  end)

  it("carries the version the host reports", function()
    local r = rt.exec({ rt.BIN, "-v" })
    local version = r.out:match("csock (%d+%.%d+%.%d+)")
    assert.is_string(version)
    assert.truthy(slurp("csock.1"):find(version, 1, true), "csock.1 should name version " .. version)
  end)
end)
