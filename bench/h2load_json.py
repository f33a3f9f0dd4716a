"""h2load's text summary on stdin -> the JSON line report.lua prints for wrk."""
import json, re, sys

out = sys.stdin.read()
def num(pattern, default=0.0):
    m = re.search(pattern, out)
    return float(m.group(1)) if m else default

def us(value, unit):
    return float(value) * {"us": 1, "ms": 1000, "s": 1_000_000}[unit]

finished = re.search(r"finished in ([\d.]+)(ms|s)", out)
duration_us = us(*finished.groups()) if finished else 0
m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
done, ok, failed, errored = (int(m.group(i)) for i in (3, 4, 5, 6)) if m else (0, 0, 0, 0)
lat = re.search(r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)", out)
mean_us = us(lat.group(5), lat.group(6)) if lat else 0
print(json.dumps(dict(requests=ok, duration_us=int(duration_us), errors=errored,
                      status_errors=failed, p50_us=int(mean_us), p99_us=0, p999_us=0,
                      bytes=int(num(r"traffic: [\d.]+\w+ \((\d+)\) total")), mean_only=True)))
