#!/usr/bin/env python3
# Calls that fail through a mount of a full image change nothing (test/mount-full.test.ts).
# Usage: mount-full.py FILL VIEW... (FILL: a directory of the image the filler files go to, in
# another fileset; VIEWs: directories of mounts: a fileset, a lazy clone of it, ...);
# mount-full.py --state VIEW... prints only what each view shows, as the final state below.
# Each VIEW holds d/ (a default ACL), d/shared (a file, hard-linked as d/shared2) and d/sub/
# (d/sub/empty, an empty file).
# First the image is filled (a file written until ENOSPC, then a few files until no inode is
# left, or no block). Then, in every view, calls that need room are tried: each that fails must
# leave everything every view shows as it was (names, types, modes, owners, sizes, link
# counts, content, symlink targets, extended attributes; free blocks and inodes). Prints one
# JSON object: the calls tried, those that failed, the changes a failed call left (must be
# none), and the final state of each view, for the test to compare with the image unmounted.
import errno
import hashlib
import json
import os
import stat
import sys

state_only = sys.argv[1] == '--state'
views = sys.argv[2:] if state_only else sys.argv[2:]
fill_dir = None if state_only else sys.argv[1]
tried, failed, leftovers = [], [], []


def state_of(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            xs = {}
            try:
                for x in sorted(os.listxattr(p, follow_symlinks=False)):
                    xs[x] = hashlib.sha256(os.getxattr(p, x, follow_symlinks=False)).hexdigest()[:12]
            except OSError:
                pass
            if os.path.islink(p):
                what = 'l ' + os.readlink(p)
            elif stat.S_ISDIR(st.st_mode):
                what = 'd'
            elif not stat.S_ISREG(st.st_mode):
                what = 'special %o' % stat.S_IFMT(st.st_mode)
            else:
                with open(p, 'rb') as f:
                    what = 'f %d %s' % (st.st_size, hashlib.sha256(f.read()).hexdigest()[:12])
            out[rel] = '%s mode=%o uid=%d nlink=%d %s' % (what, st.st_mode & 0o7777, st.st_uid, st.st_nlink, json.dumps(xs, sort_keys=True))
    return out


def everything():
    s = {v: state_of(v) for v in views}
    vfs = os.statvfs(views[0])
    s['#free'] = [vfs.f_bfree, vfs.f_ffree]
    return s


def attempt(label, fn):
    before = everything()
    tried.append(label)
    try:
        fn()
    except OSError as e:
        failed.append('%s: %s' % (label, errno.errorcode.get(e.errno, e.errno)))
        after = everything()
        if after != before:
            diff = []
            for k in sorted(set(before) | set(after)):
                if before.get(k) != after.get(k):
                    if isinstance(before.get(k), dict):
                        for p in sorted(set(before[k]) | set(after.get(k, {}))):
                            if before[k].get(p) != after.get(k, {}).get(p):
                                diff.append('%s/%s: %s -> %s' % (k, p, before[k].get(p), after.get(k, {}).get(p)))
                    else:
                        diff.append('%s: %s -> %s' % (k, before.get(k), after.get(k)))
            leftovers.append({'call': label, 'changed': diff[:10]})


def write_new(path, n):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, b'w' * n)
    finally:
        os.close(fd)


if state_only:
    print(json.dumps({v: state_of(v) for v in views}))
    sys.exit(0)

everything()  # (a lazy clone's view is expanded by this first walk, while there is room)

# Fill the image: one big file until ENOSPC, then small files until nothing is left.
base = fill_dir
fd = os.open(os.path.join(base, 'big'), os.O_WRONLY | os.O_CREAT, 0o644)
chunk = b'f' * (256 * 1024)
try:
    while True:
        os.write(fd, chunk)
except OSError as e:
    assert e.errno == errno.ENOSPC, e
finally:
    os.close(fd)
i = 0
try:
    while True:
        write_new(os.path.join(base, 'small%d' % i), 100)
        i += 1
except OSError as e:
    assert e.errno == errno.ENOSPC, e

for v in views:
    d = os.path.join(v, 'd')
    attempt(v + ': mkdir in a directory with a default ACL', lambda: os.mkdir(os.path.join(d, 'newdir')))
    attempt(v + ': create in a directory with a default ACL', lambda: write_new(os.path.join(d, 'newfile'), 0))
    def fill_empty():
        fd = os.open(os.path.join(d, 'sub', 'empty'), os.O_WRONLY)
        try:
            os.pwrite(fd, b'e' * 65536, 0)  # (one request, as below)
        finally:
            os.close(fd)
    attempt(v + ': write 64 KiB into an empty file', fill_empty)
    attempt(v + ': symlink with a long target', lambda: os.symlink('t' * 3000, os.path.join(d, 'sub', 'long')))
    attempt(v + ': mknod (fifo)', lambda: os.mkfifo(os.path.join(d, 'sub', 'fifo')))
    attempt(v + ': setxattr of 60 KiB', lambda: os.setxattr(os.path.join(d, 'shared'), 'user.big', b'x' * 61440))
    attempt(v + ': setxattr on a directory', lambda: os.setxattr(os.path.join(d, 'sub'), 'user.big', b'y' * 30000))

    # (one request: the kernel splits a write at page boundaries and max_write, and a part
    # written before the part that fails is a short write, as on any file system)
    def grow():
        fd = os.open(os.path.join(d, 'shared'), os.O_WRONLY)
        try:
            os.pwrite(fd, b'g' * 65536, 8192)
        finally:
            os.close(fd)
    attempt(v + ': write 64 KiB past the end of a file (a clone shares it)', grow)

    def overwrite():
        with open(os.path.join(d, 'shared'), 'r+b') as f:
            f.write(b'O' * 8192)
    attempt(v + ': overwrite a file a clone shares', overwrite)

    def falloc():
        fd = os.open(os.path.join(d, 'shared2'), os.O_WRONLY)
        try:
            os.posix_fallocate(fd, 0, 1 << 20)
        finally:
            os.close(fd)
    attempt(v + ': fallocate 1 MiB', falloc)
    attempt(v + ': link into a full directory', lambda: os.link(os.path.join(d, 'shared'), os.path.join(d, 'sub', 'l%d' % len(tried))))
    attempt(v + ': rename into a subdirectory', lambda: os.rename(os.path.join(d, 'shared2'), os.path.join(d, 'sub', 'moved')))

print(json.dumps({'tried': tried, 'failed': failed, 'leftovers': leftovers, 'final': {v: state_of(v) for v in views}}))
