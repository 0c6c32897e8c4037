#!/usr/bin/env python3
# A probe of a mount's latency (test/mount-slices.test.ts, bench/slice.ts): in directory DIR
# of a mount it makes small files and reads them back, over and over, timing every call that
# reaches the filesystem's server (create, write, close, open, read, readdir, unlink), until
# file STOP exists (checked between rounds) or --seconds pass. It then prints one line of
# JSON: the number of calls, their p50/p99/max latency in ms, and the rounds made. It runs in
# a process of its own: the server of the mount must never make these calls itself.
# Usage: mount-probe.py DIR STOP [--seconds S]
import json, os, sys, time

d, stop = sys.argv[1], sys.argv[2]
limit = float(sys.argv[sys.argv.index('--seconds') + 1]) if '--seconds' in sys.argv else 600.0
os.makedirs(d, exist_ok=True)
lat = []
rounds = 0
end = time.monotonic() + limit


def timed(f, *a):
    t = time.monotonic()
    r = f(*a)
    lat.append(time.monotonic() - t)
    return r


# Ready: the caller starts its command once this line is out.
print('ready', flush=True)
while time.monotonic() < end and not os.path.exists(stop):
    p = os.path.join(d, 'f%d' % (rounds % 16))
    fd = timed(os.open, p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    timed(os.write, fd, b'probe %d\n' % rounds)
    timed(os.close, fd)
    fd = timed(os.open, p, os.O_RDONLY)
    timed(os.read, fd, 4096)
    timed(os.close, fd)
    timed(os.listdir, d)
    timed(os.unlink, p)
    rounds += 1
    time.sleep(0.001)
lat.sort()
n = len(lat)
q = lambda x: round(lat[min(n - 1, int(x * n))] * 1000, 2) if n else 0
print(json.dumps({'calls': n, 'rounds': rounds, 'p50': q(0.5), 'p99': q(0.99), 'max': round(lat[-1] * 1000, 2) if n else 0}), flush=True)
