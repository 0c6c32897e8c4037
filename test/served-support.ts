// What the tests of commands run by a server in slices share (mount-cpin, mount-sdel,
// mount-scopy): the latency probe on a mount, and a description of a host tree.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {PYTHON, run} from './fuse-support.js'

const PROBE = path.join(import.meta.dirname, 'mount-cpin-probe.py')

export interface Latency {
  calls: number
  p50: number
  p99: number
  max: number
}

/**
 * Everything a host shows of every path below `root`, by a child process: type, mode, owner,
 * nanosecond times (a directory's and a symlink's access time left out: reading sets them),
 * size, content hash, allocated blocks of a sparse file, hard links (by the first path of
 * each inode), symlink target, device number, extended attributes (POSIX ACLs among them).
 */
export async function describeTree(root: string): Promise<Record<string, string>> {
  const r = await run(PYTHON, ['-c', `
import hashlib, json, os, stat, sys
root = os.fsencode(sys.argv[1])
out = {}
first = {}
for d, subdirs, files in os.walk(root):
    subdirs.sort()
    for n in sorted(subdirs + files):
        p = os.path.join(d, n)
        st = os.lstat(p)
        m = st.st_mode
        f = [oct(stat.S_IFMT(m)), oct(stat.S_IMODE(m)), '%d:%d' % (st.st_uid, st.st_gid), 'm=%d' % st.st_mtime_ns]
        if stat.S_ISREG(m) or stat.S_ISCHR(m) or stat.S_ISBLK(m) or stat.S_ISFIFO(m):
            f.append('a=%d' % st.st_atime_ns)
        if stat.S_ISREG(m):
            fd = os.open(p, os.O_RDONLY | os.O_NOATIME)
            h = hashlib.sha256()
            while True:
                b = os.read(fd, 1 << 20)
                if not b:
                    break
                h.update(b)
            os.close(fd)
            f += ['size=%d' % st.st_size, h.hexdigest()[:16]]
            if st.st_blocks * 512 < st.st_size:
                f.append('blocks=%d' % st.st_blocks)
        if not stat.S_ISDIR(m) and st.st_nlink > 1:
            f.append('link=' + first.setdefault((st.st_dev, st.st_ino), os.path.relpath(p, root).decode('latin1')))
        if stat.S_ISLNK(m):
            f.append('-> ' + os.readlink(p).decode('latin1'))
        if stat.S_ISCHR(m) or stat.S_ISBLK(m):
            f.append('rdev=%d:%d' % (os.major(st.st_rdev), os.minor(st.st_rdev)))
        xs = sorted((x, os.getxattr(p, x, follow_symlinks=False).hex()) for x in os.listxattr(p, follow_symlinks=False))
        if xs:
            f.append('x=' + ','.join('%s=%s' % x for x in xs))
        out[os.path.relpath(p, root).decode('latin1')] = ' '.join(f)
print(json.dumps(out))
`, root], {timeoutMs: 120_000})
  if (r.code !== 0) throw new Error(r.stderr)
  return JSON.parse(r.stdout) as Record<string, string>
}

/** Starts the probe on `dir` (on a mount) for at most `limit` seconds; stop() ends it and gives its figures. */
export function probe(dir: string, work: string, limit = 120): {stop: () => Promise<Latency>} {
  const stopFile = path.join(work, `stop-${crypto.randomUUID()}`)
  const running = run(PYTHON, [PROBE, dir, stopFile, String(limit)], {timeoutMs: (limit + 30) * 1000})
  return {
    stop: async () => {
      fs.writeFileSync(stopFile, '')
      const r = await running
      if (r.code !== 0) throw new Error(`probe failed: ${r.stderr}`)
      return JSON.parse(r.stdout) as Latency
    },
  }
}
