#!/usr/bin/env python3
# fsx, written here: random I/O on one file (writes, reads, truncates up and down, holes,
# fallocate: punch hole, zero range, allocation with and without KEEP_SIZE; mmap writes and
# reads, fsync, close and reopen, the page cache dropped so that reads reach the server,
# copy_file_range from a second file and within the file, block-aligned or not, so that whole
# blocks are shared and then written over), every read checked against a model held in memory.
# Usage: mount-fsx.py FILE OPS SEED MODEL_OUT [existing]. Exit 0 when every read agreed (the
# model's final content is written to MODEL_OUT for the caller to check the image), 1 with the
# operation log on stderr at the first difference. With `existing`, FILE and FILE.src are
# not made afresh: the run starts from what they hold (files a clone shares with its source).
import ctypes
import mmap
import os
import random
import sys

path, nops, seed, model_out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
existing = len(sys.argv) > 5 and sys.argv[5] == 'existing'
rnd = random.Random(seed)
MAXLEN = 1 << 20
log = []
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 0x01, 0x02, 0x10


def open_file(p, fresh):
    """A file of the run, opened, and its model: what it holds (existing), or `fresh` written."""
    if existing:
        with open(p, 'rb') as f:
            return os.open(p, os.O_RDWR), bytearray(f.read())
    fd = os.open(p, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
    os.pwrite(fd, fresh, 0)
    return fd, bytearray(fresh)


fd, model = open_file(path, b'')
# the second file, a source of copies: written with its own pattern, rewritten now and then
src_path = path + '.src'
src, src_model = open_file(src_path, os.urandom(MAXLEN // 2))


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


def copy_span(limit):
    """An offset and a length for copy_file_range: whole blocks half of the time."""
    aligned = rnd.random() < 0.5
    off = rnd.randrange(0, max(1, limit))
    n = rnd.choice([1, 100, 4096, 8192, 65536, 200000, 400000])
    if aligned:
        off -= off % 4096
        n = max(4096, n - n % 4096)
    return off, n


def copy_range(fin, off_in, fout, off_out, n):
    """copy_file_range until n bytes or the source's end; the bytes copied."""
    done = 0
    while done < n:
        c = os.copy_file_range(fin, fout, n - done, off_in + done, off_out + done)
        if c == 0:
            break
        done += c
    return done


for i in range(nops):
    k = rnd.choice(['write', 'write', 'read', 'read', 'truncate', 'mapwrite', 'mapread', 'hole', 'fsync', 'reopen', 'copyin', 'copyself', 'srcwrite',
                    'punch', 'zero', 'falloc', 'drop'])
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
    elif k == 'copyin':
        off_in, n = copy_span(len(src_model))
        off_out = rnd.randrange(0, MAXLEN // 2)
        if rnd.random() < 0.5:
            off_out -= off_out % 4096 - off_in % 4096 if off_out >= 4096 else 0
        log.append('copyin %d -> %d %d' % (off_in, off_out, n))
        got = copy_range(src, off_in, fd, off_out, n)
        want = max(0, min(n, len(src_model) - off_in))
        if got != want:
            fail('copy_file_range from the source at %d of %d: %d bytes, the model %d' % (off_in, n, got, want))
        if got:
            if off_out > len(model):
                model.extend(b'\0' * (off_out - len(model)))
            model[off_out:off_out + got] = src_model[off_in:off_in + got]
    elif k == 'copyself':
        if len(model) < 8192:
            continue
        off_in, n = copy_span(len(model) // 2)
        n = min(n, len(model) // 2 - off_in)
        off_out = len(model) // 2 + rnd.randrange(0, len(model) // 2)
        if rnd.random() < 0.5:
            off_out += (off_in - off_out) % 4096
        if n <= 0 or off_out >= MAXLEN:
            continue
        log.append('copyself %d -> %d %d' % (off_in, off_out, n))
        got = copy_range(fd, off_in, fd, off_out, n)
        if got != n:
            fail('copy_file_range within the file at %d of %d: %d bytes' % (off_in, n, got))
        piece = bytes(model[off_in:off_in + n])
        if off_out > len(model):
            model.extend(b'\0' * (off_out - len(model)))
        model[off_out:off_out + n] = piece
    elif k == 'srcwrite':
        off = rnd.randrange(0, len(src_model))
        n = min(rnd.choice([1, 4096, 30000]), len(src_model) - off)
        b = bytes([rnd.getrandbits(8)]) * n
        log.append('srcwrite %d %d' % (off, n))
        os.pwrite(src, b, off)
        src_model[off:off + n] = b
    elif k in ('punch', 'zero', 'falloc'):
        off, n = span()
        keep = k == 'punch' or rnd.random() < 0.5
        mode = {'punch': FALLOC_FL_PUNCH_HOLE, 'zero': FALLOC_FL_ZERO_RANGE, 'falloc': 0}[k] | (FALLOC_FL_KEEP_SIZE if keep else 0)
        log.append('fallocate %s%s %d %d' % (k, ' keep-size' if keep else '', off, n))
        if libc.fallocate(fd, mode, off, n) != 0:
            fail('fallocate %s at %d of %d: %s' % (k, off, n, os.strerror(ctypes.get_errno())))
        if k != 'falloc' and off < len(model):
            end = min(off + n, len(model))
            model[off:end] = b'\0' * (end - off)
        if not keep and off + n > len(model):
            model.extend(b'\0' * (off + n - len(model)))
    elif k == 'drop':
        # the kernel keeps file pages (keep_cache): drop them, so that the next reads ask the server
        log.append('drop the page cache')
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
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
with open(src_path, 'rb') as f:
    if f.read() != bytes(src_model):
        fail('the source of the copies differs from its model')
os.close(src)
with open(model_out, 'wb') as f:
    f.write(model)
print(nops)
