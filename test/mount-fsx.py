#!/usr/bin/env python3
# fsx, written here: random I/O on one file (writes, reads, truncates up and down, holes,
# mmap writes and reads, fsync, close and reopen), every read checked against a model held in
# memory. Usage: mount-fsx.py FILE OPS SEED MODEL_OUT. Exit 0 when every read agreed (the
# model's final content is written to MODEL_OUT for the caller to check the image), 1 with the
# operation log on stderr at the first difference.
import mmap
import os
import random
import sys

path, nops, seed, model_out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rnd = random.Random(seed)
MAXLEN = 1 << 20
model = bytearray()
log = []
fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)


def fail(msg):
    sys.stderr.write('fsx: seed %d: %s\nlast operations:\n  %s\n' % (seed, msg, '\n  '.join(log[-20:])))
    sys.exit(1)


def check(off, got):
    want = bytes(model[off:off + len(got)])
    if got != want:
        for i in range(len(got)):
            if got[i:i + 1] != want[i:i + 1]:
                fail('read at %d: byte %d is %r, the model has %r' % (off, off + i, got[i:i + 1], want[i:i + 1]))
        fail('read at %d: %d bytes, the model has %d' % (off, len(got), len(want)))


def span():
    off = rnd.randrange(0, MAXLEN)
    n = rnd.choice([1, 7, 512, 4096, 4097, 20000, 131072, 300000])
    return off, min(n, MAXLEN - off)


for i in range(nops):
    k = rnd.choice(['write', 'write', 'read', 'read', 'truncate', 'mapwrite', 'mapread', 'hole', 'fsync', 'reopen'])
    if k == 'write':
        off, n = span()
        b = bytes(rnd.getrandbits(8) for _ in range(min(n, 64))) * (n // 64 + 1)
        b = b[:n]
        log.append('write %d %d' % (off, n))
        os.pwrite(fd, b, off)
        if off > len(model):
            model.extend(b'\0' * (off - len(model)))
        model[off:off + n] = b
    elif k == 'read':
        off, n = span()
        log.append('read %d %d' % (off, n))
        got = os.pread(fd, n, off)
        if len(got) != max(0, min(n, len(model) - off)):
            fail('read at %d of %d: %d bytes, size in the model %d' % (off, n, len(got), len(model)))
        check(off, got)
    elif k == 'truncate':
        size = rnd.choice([0, rnd.randrange(0, MAXLEN), len(model) + rnd.randrange(0, 100000), max(0, len(model) - rnd.randrange(0, 5000))])
        size = min(size, MAXLEN)
        log.append('truncate %d' % size)
        os.ftruncate(fd, size)
        if size < len(model):
            del model[size:]
        else:
            model.extend(b'\0' * (size - len(model)))
        st = os.fstat(fd)
        if st.st_size != len(model):
            fail('size %d after truncate, the model has %d' % (st.st_size, len(model)))
    elif k == 'hole':
        # a write far beyond the end leaves a hole that must read as zeros
        off = min(MAXLEN - 10, len(model) + rnd.randrange(4096, 200000))
        log.append('hole-write %d' % off)
        os.pwrite(fd, b'END', off)
        model.extend(b'\0' * (off - len(model)))
        model[off:off + 3] = b'END'
    elif k in ('mapwrite', 'mapread'):
        if len(model) == 0:
            continue
        off = rnd.randrange(0, len(model))
        n = min(rnd.choice([1, 100, 4096, 10000]), len(model) - off)
        start = off - off % mmap.ALLOCATIONGRANULARITY
        m = mmap.mmap(fd, off + n - start, offset=start)
        try:
            if k == 'mapwrite':
                b = bytes([rnd.getrandbits(8)]) * n
                log.append('mapwrite %d %d' % (off, n))
                m[off - start:off - start + n] = b
                model[off:off + n] = b
                if rnd.random() < 0.5:
                    m.flush()
            else:
                log.append('mapread %d %d' % (off, n))
                check(off, m[off - start:off - start + n])
        finally:
            m.close()
    elif k == 'fsync':
        log.append('fsync')
        os.fsync(fd)
    elif k == 'reopen':
        log.append('reopen')
        os.close(fd)
        fd = os.open(path, os.O_RDWR)
    st = os.fstat(fd)
    if st.st_size != len(model):
        fail('size %d, the model has %d' % (st.st_size, len(model)))

os.fsync(fd)
os.close(fd)
with open(path, 'rb') as f:
    check(0, f.read())
with open(model_out, 'wb') as f:
    f.write(model)
print(nops)
