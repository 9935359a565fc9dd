-- wrk script for `make bench-server`: POSTs one PNG to /classify and prints one RESULT line.
local path = os.getenv("BENCH_IMAGE") or "tests/data/fashion_00.png"
local f = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "image/png"

local non200 = 0
response = function(status, headers, body)
    if status ~= 200 then non200 = non200 + 1 end
end

done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("RESULT requests=%d rps=%.1f p50_ms=%.3f p99_ms=%.3f errors=%d\n",
        summary.requests, summary.requests / (summary.duration / 1e6),
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        e.connect + e.read + e.write + e.timeout + e.status))
end
