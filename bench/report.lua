-- Loaded by the other scripts: when wrk finishes, print one line that run.py parses,
-- so the numbers do not depend on wrk's human-readable summary format.
-- Latencies are in microseconds; errors.status counts non-2xx/3xx responses.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,' ..
    '"errors":{"connect":%.0f,"read":%.0f,"write":%.0f,"timeout":%.0f,"status":%.0f},' ..
    '"latency_us":{"mean":%.1f,"stdev":%.1f,"max":%.0f,"p50":%.0f,"p90":%.0f,"p99":%.0f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.timeout, e.status,
    latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
