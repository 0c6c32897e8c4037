#!/usr/bin/env python3
# The worker of test/mount-model.test.ts: applies filesystem calls under one root directory
# (a prism mount, or a directory on the host that models it), one JSON request per line on
# stdin, one JSON answer per line on stdout: {"ok": value} or {"err": "ENOENT"}. `dump`
# describes the whole tree (types, modes, sizes, link counts, contents hashed, symlink targets,
# user.* attributes) so that the two sides can be compared. It must never leave its root.
import hashlib
import errno
import json
import os
import sys

root = sys.argv[1]


def p(rel):
    return os.path.join(root, rel.lstrip('/'))


def dump():
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            kind = st.st_mode & 0o170000
            d = {'mode': oct(st.st_mode), 'nlink': st.st_nlink}
            if kind == 0o100000:
                with open(full, 'rb') as f:
                    d['sha'] = hashlib.sha256(f.read()).hexdigest()[:16]
                d['size'] = st.st_size
            elif kind == 0o120000:
                d['target'] = os.readlink(full)
            try:
                xs = sorted(x for x in os.listxattr(full, follow_symlinks=False) if x.startswith('user.'))
                if xs:
                    d['x'] = {x: os.getxattr(full, x, follow_symlinks=False).hex() for x in xs}
            except OSError:
                pass
            out[rel] = d
    return out


def op(r):
    k = r['op']
    if k == 'create':
        fd = os.open(p(r['path']), os.O_CREAT | os.O_WRONLY | os.O_TRUNC, r.get('mode', 0o644))
        try:
            os.write(fd, bytes.fromhex(r['data']))
        finally:
            os.close(fd)
    elif k == 'write':
        fd = os.open(p(r['path']), os.O_WRONLY)
        try:
            os.pwrite(fd, bytes.fromhex(r['data']), r['off'])
        finally:
            os.close(fd)
    elif k == 'append':
        fd = os.open(p(r['path']), os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, bytes.fromhex(r['data']))
        finally:
            os.close(fd)
    elif k == 'truncate':
        os.truncate(p(r['path']), r['size'])
    elif k == 'rename':
        os.rename(p(r['a']), p(r['b']))
    elif k == 'link':
        os.link(p(r['a']), p(r['b']))
    elif k == 'symlink':
        os.symlink(r['target'], p(r['b']))
    elif k == 'mkdir':
        os.mkdir(p(r['path']), r.get('mode', 0o755))
    elif k == 'rmdir':
        os.rmdir(p(r['path']))
    elif k == 'unlink':
        os.unlink(p(r['path']))
    elif k == 'chmod':
        os.chmod(p(r['path']), r['mode'])
    elif k == 'utimens':
        os.utime(p(r['path']), ns=(r['atime'], r['mtime']), follow_symlinks=False)
        st = os.lstat(p(r['path']))
        return [st.st_atime_ns, st.st_mtime_ns]
    elif k == 'setxattr':
        os.setxattr(p(r['path']), r['name'], bytes.fromhex(r['value']), follow_symlinks=False)
    elif k == 'removexattr':
        os.removexattr(p(r['path']), r['name'], follow_symlinks=False)
    elif k == 'read':
        with open(p(r['path']), 'rb') as f:
            return hashlib.sha256(f.read()).hexdigest()[:16]
    elif k == 'unlinkopen':
        # a file unlinked while open stays readable and writable until its last close
        fd = os.open(p(r['path']), os.O_RDWR)
        try:
            os.unlink(p(r['path']))
            os.pwrite(fd, b'after-unlink', 0)
            return os.pread(fd, 12, 0).decode()
        finally:
            os.close(fd)
    elif k == 'dump':
        return dump()
    else:
        raise ValueError('unknown op ' + k)
    return None


for line in sys.stdin:
    req = json.loads(line)
    try:
        res = {'ok': op(req)}
    except OSError as e:
        res = {'err': errno.errorcode.get(e.errno, str(e.errno))}
    sys.stdout.write(json.dumps(res) + '\n')
    sys.stdout.flush()
