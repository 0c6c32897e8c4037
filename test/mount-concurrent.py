#!/usr/bin/env python3
# The worker of test/mount-concurrent.test.ts: one process per view, each view one directory
# seen through a different mount of the same image (two mounts of a fileset, the whole-image
# mount, a FILESET:/path mount). In every round all processes make the same kind of call at the
# same moment (a barrier before each), each through its own view and on names of its own, or
# all on one shared file. A call that changes a directory or an inode makes the server tell the
# other mounts' kernels, which need the locks that the other processes' calls hold: this is
# what hung before (each answer waited on the other mount's kernel). Prints one JSON line: the
# names every view lists at the end, per view, and the calls that failed.
#
#   mount-concurrent.py ROUNDS VIEW...   (each VIEW holds the subdirectories a/ and b/ and the file shared)
import json
import multiprocessing as mp
import os
import queue
import sys
import threading

rounds = int(sys.argv[1])
views = sys.argv[2:]
DEADLINE = 60  # seconds: the whole run takes a few

# Each kind of call, made by process `p` in round `k` through its view `v`.
def calls(v, k, p):
    a, b = os.path.join(v, 'a'), os.path.join(v, 'b')
    own = f'{k}-{p}'
    shared = os.path.join(v, 'shared')

    def create():
        fd = os.open(os.path.join(a, 'f' + own), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
        os.write(fd, own.encode())
        os.close(fd)

    def write_shared():
        fd = os.open(shared, os.O_WRONLY)
        os.pwrite(fd, bytes([65 + p]), p)
        os.close(fd)

    return [
        ('mkdir', lambda: os.mkdir(os.path.join(a, 'm' + own))),
        ('create', create),
        ('symlink', lambda: os.symlink('target-' + own, os.path.join(a, 's' + own))),
        ('mkfifo', lambda: os.mkfifo(os.path.join(a, 'p' + own))),
        ('link', lambda: os.link(os.path.join(a, 'f' + own), os.path.join(a, 'l' + own))),
        ('rename', lambda: os.rename(os.path.join(a, 'f' + own), os.path.join(a, 'r' + own))),
        ('rename across', lambda: os.rename(os.path.join(a, 'r' + own), os.path.join(b, 'x' + own))),
        ('rename back', lambda: os.rename(os.path.join(b, 'x' + own), os.path.join(a, 'y' + own))),
        ('unlink', lambda: os.unlink(os.path.join(a, 'l' + own))),
        ('rmdir', lambda: os.rmdir(os.path.join(a, 'm' + own))),
        ('chmod shared', lambda: os.chmod(shared, 0o600 + p)),
        ('setxattr shared', lambda: os.setxattr(shared, f'user.p{p}', own.encode())),
        ('write shared', write_shared),
        ('utime dir', lambda: os.utime(a, (k, k + p))),
    ]


def worker(p, barrier, q):
    failed = []
    try:
        for k in range(rounds):
            for name, call in calls(views[p], k, p):
                barrier.wait(timeout=DEADLINE)
                try:
                    call()
                except OSError as e:
                    failed.append(f'{name} round {k} process {p}: {e}')
    except threading.BrokenBarrierError:
        failed.append(f'process {p}: the others stopped answering')
    q.put(failed)


def main():
    barrier = mp.Barrier(len(views))
    q = mp.Queue()
    procs = [mp.Process(target=worker, args=(p, barrier, q), daemon=True) for p in range(len(views))]
    for pr in procs:
        pr.start()
    failed = []
    try:
        for _ in procs:
            failed += q.get(timeout=DEADLINE)
    except queue.Empty:
        # A call hung (the mount deadlocked): say so, and leave no process behind (a call waiting
        # on a FUSE request ends on SIGKILL; the test's cleanup aborts the mounts).
        for pr in procs:
            pr.kill()
        print(json.dumps({'hung': f'calls still waiting after {DEADLINE} s'}), flush=True)
        os._exit(1)
    for pr in procs:
        pr.join()
    listed = [{'a': sorted(os.listdir(os.path.join(v, 'a'))), 'b': sorted(os.listdir(os.path.join(v, 'b')))} for v in views]
    print(json.dumps({'listed': listed, 'failed': failed}))


if __name__ == '__main__':
    main()
