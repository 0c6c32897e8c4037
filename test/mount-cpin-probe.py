#!/usr/bin/env python3
# The probe of test/mount-cpin.test.ts and bench/served-write.ts: while a long prism command
# runs on a served image, it keeps making filesystem calls on other files of a mount (stat,
# open + read + close, a small write + fsync, a listing) and times each one. It runs until the
# host file STOP exists (or for at most LIMIT seconds), then prints one JSON line: the number
# of calls, the p50, p99 and max latency in milliseconds, and the slowest call of each kind.
#   mount-cpin-probe.py DIR STOP [LIMIT]
# DIR, on the mount, is made and filled by the probe. A call that fails ends the probe (exit 1).
import json
import os
import sys
import time

d, stop = sys.argv[1], sys.argv[2]
limit = float(sys.argv[3]) if len(sys.argv) > 3 else 120.0
os.makedirs(d, exist_ok=True)
files = [os.path.join(d, f'p{i}') for i in range(8)]
for f in files:
    with open(f, 'wb') as fh:
        fh.write(b'probe' * 100)

lat = []
worst = [0.0] * 4
end = time.monotonic() + limit
i = 0
while time.monotonic() < end and not os.path.exists(stop):
    f = files[i % len(files)]
    kind = i % 4
    t = time.monotonic()
    if kind == 0:
        os.stat(f)
    elif kind == 1:
        with open(f, 'rb') as fh:
            fh.read()
    elif kind == 2:
        fd = os.open(f, os.O_WRONLY)
        os.pwrite(fd, b'%08d' % i, 0)
        os.fsync(fd)
        os.close(fd)
    else:
        os.listdir(d)
    lat.append((time.monotonic() - t) * 1000)
    worst[kind] = max(worst[kind], lat[-1])
    i += 1
    time.sleep(0.002)

lat.sort()
n = len(lat)
pick = lambda q: round(lat[min(n - 1, int(q * n))], 3) if n else 0
print(json.dumps({'calls': n, 'p50': pick(0.5), 'p99': pick(0.99), 'max': round(lat[-1], 3) if n else 0,
                  'worst': dict(zip(['stat', 'read', 'write+fsync', 'listdir'], [round(w, 3) for w in worst]))}))
