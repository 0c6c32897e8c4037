# Steps of test/mount-tmpfile.test.ts, run in a child process (the test process never touches
# a mount itself). Each step prints one JSON line: what the calls gave, errors by name.
#   mount-tmpfile.py DIR STEP...
# DATA is the bytes to write, or N*C for N times the character C. Steps:
#   link NAME DATA       O_TMPFILE in DIR: write DATA, fstat, link it in as NAME (linkat of
#                        /proc/self/fd/N, AT_SYMLINK_FOLLOW), fstat again, read it back by name
#   excl DATA            O_TMPFILE | O_EXCL: write DATA, then try to link it (must fail)
#   drop DATA            O_TMPFILE: write DATA (fsync), close without a name
#   mode MODE            O_TMPFILE with MODE under the umask 022: the mode and group it has
#   python               tempfile.TemporaryFile in DIR (glibc and Python use O_TMPFILE first)
#   hold DATA            O_TMPFILE: write DATA, fsync, print, then wait for stdin to close
import ctypes
import errno
import json
import os
import re
import sys
import tempfile

d = sys.argv[1]
args = sys.argv[2:]


def err_name(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def tmp(flags=0, mode=0o600):
    return os.open(d, os.O_TMPFILE | os.O_RDWR | flags, mode)


libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
AT_SYMLINK_FOLLOW = 0x400


def link_fd(fd, dst):
    """Names open file `fd` `dst`, as open(2) shows: linkat of /proc/self/fd/N, following it
    (Python's os.link calls link(2), which would link the /proc entry itself)."""
    if libc.linkat(AT_FDCWD, f'/proc/self/fd/{fd}'.encode(), AT_FDCWD, dst.encode(), AT_SYMLINK_FOLLOW) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def content(arg):
    """DATA as given, or N*C: N times the character C (an argument has at most 128 KiB)."""
    m = re.fullmatch(r'(\d+)\*(.)', arg)
    return (m.group(2) * int(m.group(1)) if m else arg).encode()


def out(**kw):
    print(json.dumps(kw), flush=True)


def step(op, a):
    try:
        if op == 'link':
            name, data = a.pop(0), content(a.pop(0))
            fd = tmp()
            os.write(fd, data)
            before = os.fstat(fd).st_nlink
            listed = sorted(os.listdir(d))
            link_fd(fd, os.path.join(d, name))
            after = os.fstat(fd).st_nlink
            os.fsync(fd)
            os.close(fd)
            with open(os.path.join(d, name), 'rb') as f:
                back = f.read().decode()
            out(op=op, nlinkBefore=before, nlinkAfter=after, listedBefore=listed, read=back)
        elif op == 'excl':
            data = content(a.pop(0))
            fd = tmp(os.O_EXCL)
            os.write(fd, data)
            try:
                link_fd(fd, os.path.join(d, 'never'))
                res = 'linked'
            except OSError as e:
                res = err_name(e)
            os.close(fd)
            out(op=op, link=res, exists=os.path.exists(os.path.join(d, 'never')))
        elif op == 'drop':
            data = content(a.pop(0))
            fd = tmp()
            os.write(fd, data)
            os.fsync(fd)
            st = os.fstat(fd)
            os.close(fd)
            out(op=op, size=st.st_size, nlink=st.st_nlink)
        elif op == 'mode':
            mode = int(a.pop(0), 8)
            os.umask(0o022)
            fd = tmp(mode=mode)
            st = os.fstat(fd)
            os.close(fd)
            out(op=op, mode=oct(st.st_mode), gid=st.st_gid, uid=st.st_uid)
        elif op == 'python':
            with tempfile.TemporaryFile(dir=d) as f:
                f.write(b'python tempfile')
                f.flush()
                f.seek(0)
                back = f.read().decode()
                nlink = os.fstat(f.fileno()).st_nlink
            out(op=op, read=back, nlink=nlink, listed=sorted(os.listdir(d)))
        elif op == 'hold':
            data = content(a.pop(0))
            fd = tmp()
            os.write(fd, data)
            os.fsync(fd)
            out(op=op, held=True)
            sys.stdin.read()
            try:
                os.close(fd)
            except OSError:
                pass
        else:
            raise SystemExit(f'unknown step {op}')
    except OSError as e:
        out(op=op, error=err_name(e))


while args:
    step(args.pop(0), args)
