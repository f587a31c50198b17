-- The simulated fleet for wrk (bench/ingest/run.py starts it): each wrk thread posts batches
-- round-robin over its share of the nodes in the fleet file (a line per node: token, then the
-- uuids of its GPUs), 3 samples per GPU 10 s apart, each batch with a fresh batch_id.
-- Like the agent, a node sends its GPU inventory with its first report ever (the warm-up's)
-- and then every 20th (the agent: every 10 minutes, reporting every 30 s).
-- Arguments after `--`: the number of wrk threads, the unix time of each node's first sample,
-- and 1 if this run holds the nodes' first reports.

local fleet_path = os.getenv("BENCH_FLEET")
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local count = tonumber(args[1])
  base = tonumber(args[2])
  first_reports = args[3] == "1"
  nodes, cursor, accepted, refused = {}, 0, 0, 0
  local line_no = 0
  for line in io.lines(fleet_path) do
    if line_no % count == id then
      local fields = {}
      for field in line:gmatch("%S+") do
        fields[#fields + 1] = field
      end
      local token = table.remove(fields, 1)
      nodes[#nodes + 1] = { token = token, uuids = fields, step = 0, sent = 0 }
    end
    line_no = line_no + 1
  end
  math.randomseed(os.time() * 1000 + id)
end

local function uuid4()
  return string.format("%04x%04x-%04x-4%03x-%04x-%04x%04x%04x",
    math.random(0, 0xffff), math.random(0, 0xffff), math.random(0, 0xffff),
    math.random(0, 0xfff), math.random(0x8000, 0xbfff),
    math.random(0, 0xffff), math.random(0, 0xffff), math.random(0, 0xffff))
end

local GPU = '{"uuid":"%s","name":"NVIDIA H100 80GB HBM3","memory_total_mib":81559}'

local function inventory(node)
  local gpus = {}
  for i, gpu in ipairs(node.uuids) do
    gpus[i] = string.format(GPU, gpu)
  end
  return '"gpus":[' .. table.concat(gpus, ",") .. "],"
end

local SAMPLE = '{"gpu_uuid":"%s","ts":"%s","utilization_gpu_pct":87.0,"memory_used_mib":40000,'
  .. '"memory_total_mib":81559,"temperature_c":61.0,"power_w":512.5,"job_id":"bench-job"}'

-- Each node's samples as text, split where the times go: a request only joins strings.
local function pieces(node)
  local out = {}
  for k = 0, 2 do
    for _, gpu in ipairs(node.uuids) do
      local head, tail = string.format(SAMPLE, gpu, "\0"):match("^(.-)%z(.*)$")
      out[#out + 1] = { k = k, head = head, tail = tail }
    end
  end
  return out
end

function request()
  cursor = cursor % #nodes + 1
  local node = nodes[cursor]
  node.pieces = node.pieces or pieces(node)
  local times = {}
  for k = 0, 2 do
    times[k] = os.date("!%Y-%m-%dT%H:%M:%SZ", base + 10 * (node.step + k))
  end
  node.step = node.step + 3
  local parts = {}
  for i, piece in ipairs(node.pieces) do
    parts[i] = piece.head .. times[piece.k] .. piece.tail
  end
  node.sent = node.sent + 1
  local gpus = ""
  if (node.sent == 1 and first_reports) or node.sent % 20 == 0 then
    gpus = inventory(node)
  end
  local body = '{' .. gpus .. '"batch_id":"' .. uuid4() .. '","sent_at":"'
    .. os.date("!%Y-%m-%dT%H:%M:%SZ") .. '","samples":[' .. table.concat(parts, ",") .. "]}"
  return wrk.format("POST", "/api/v1/agent/telemetry", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. node.token,
  }, body)
end

function response(status, headers, body)
  if status == 202 then
    accepted = accepted + tonumber(body:match('"accepted":%s*(%d+)'))
  else
    refused = refused + 1
  end
end

function done(summary, latency, requests)
  local total_accepted, total_refused = 0, 0
  for _, thread in ipairs(threads) do
    total_accepted = total_accepted + thread:get("accepted")
    total_refused = total_refused + thread:get("refused")
  end
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d accepted=%d refused=%d socket_errors=%d duration_us=%d p50_us=%d p99_us=%d\n",
    summary.requests, total_accepted, total_refused,
    e.connect + e.read + e.write + e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99)))
end
