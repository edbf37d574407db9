-- wrk script for bench/hit_throughput.py: GETs spread round-robin over a hot set of objects.
--
--   wrk -t2 -c64 -d10s -s bench/configs/hotset.lua http://127.0.0.1:PORT -- PREFIX COUNT SUFFIX
--
-- requests PREFIX .. string.format("%05d", i) .. SUFFIX for i = 1..COUNT; each wrk thread starts
-- at a different place in the set. done() prints one line "WRK_JSON {...}" with the exact totals
-- (requests, bytes read including heads, duration, errors, latency percentiles).

local next_id = 0

function setup(thread)
    thread:set("thread_id", next_id)
    next_id = next_id + 1
end

local reqs = {}
local n = 0
local pos = 0

function init(args)
    local prefix, count, suffix = args[1], tonumber(args[2]), args[3] or ""
    for i = 1, count do
        reqs[i] = wrk.format("GET", string.format("%s%05d%s", prefix, i, suffix))
    end
    n = count
    pos = ((thread_id or 0) * 17) % n
end

function request()
    pos = pos % n + 1
    return reqs[pos]
end

function done(summary, latency, _)
    local e = summary.errors
    io.write(string.format(
        'WRK_JSON {"requests": %d, "bytes": %d, "duration_us": %d, "errors": '
            .. '{"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
            .. '"latency_p50_us": %d, "latency_p99_us": %d, "latency_max_us": %d}\n',
        summary.requests, summary.bytes, summary.duration,
        e.connect, e.read, e.write, e.status, e.timeout,
        latency:percentile(50), latency:percentile(99), latency.max))
end
