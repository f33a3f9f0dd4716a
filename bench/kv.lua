-- wrk script for registry writes and reads, the same load for herd and etcd.
-- Set by environment: KV_TARGET = herd | etcd, KV_OP = put | get, KV_VALUE_BYTES (default 64).
local target = os.getenv("KV_TARGET") or "herd"
local op = os.getenv("KV_OP") or "put"
local size = tonumber(os.getenv("KV_VALUE_BYTES") or "64")

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(data)
  return ((data:gsub('.', function(x)
    local r, b = '', x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and '1' or '0') end
    return r
  end) .. '0000'):gsub('%d%d%d?%d?%d?%d?', function(x)
    if (#x < 6) then return '' end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == '1' and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({ '', '==', '=' })[#data % 3 + 1])
end

local value = string.rep("v", size)
local value64 = b64(value)
local counter = 0
local thread_id = 0
local threads = {}

setup = function(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

request = function()
  counter = counter + 1
  -- Reads cycle over keys 2..1001, which the fill phase has written: wrk calls request()
  -- once before the run to check the script, so the fill's key 1 is never sent.
  local key = "bench/" .. thread_id .. "/" .. (op == "get" and (counter % 1000 + 2) or counter)
  if target == "etcd" then
    local path = op == "get" and "/v3/kv/range" or "/v3/kv/put"
    local body = op == "get" and ('{"key":"' .. b64(key) .. '"}')
                              or ('{"key":"' .. b64(key) .. '","value":"' .. value64 .. '"}')
    return wrk.format("POST", path, { ["Content-Type"] = "application/json" }, body)
  else
    if op == "get" then
      return wrk.format("GET", "/v1/kv/" .. key)
    end
    return wrk.format("PUT", "/v1/kv/" .. key, nil, value)
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"status_errors":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,"bytes":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), summary.bytes))
end
