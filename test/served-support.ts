// What the tests of commands run by a server in slices share (mount-cpin, mount-import,
// mount-sdel, mount-scopy): host trees to copy or archive, descriptions of host trees to
// compare, the latency probe on a mount (test/mount-cpin-probe.py) and the CLI as a child
// process the test may signal.
import {spawn} from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {PYTHON, run} from './fuse-support.js'
import {BIN} from './helpers.js'

const PROBE = path.join(import.meta.dirname, 'mount-cpin-probe.py')

export interface Latency {
  calls: number
  p50: number
  p99: number
  max: number
}

/** `dirs` directories of `files` small files each (a few bytes to a few KiB). */
export function smallFiles(root: string, dirs: number, files: number): void {
  for (let d = 0; d < dirs; d++) {
    const dir = path.join(root, `d${String(d).padStart(3, '0')}`)
    fs.mkdirSync(dir, {recursive: true})
    for (let f = 0; f < files; f++) fs.writeFileSync(path.join(dir, `f${f}`), `${d}/${f} `.repeat((f * 37) % 400))
  }
}

/**
 * Gives every path below `root` an access time ten days ahead (modification times kept): no
 * read moves it (relatime), so every copy of the tree reads the same times.
 */
export async function fixAtimes(root: string): Promise<void> {
  const r = await run(PYTHON, ['-c', `
import os, sys, time
root = os.fsencode(sys.argv[1])
t = time.time_ns() + 10 * 86400 * 10**9
for d, subdirs, files in os.walk(root):
    for n in subdirs + files:
        p = os.path.join(d, n)
        os.utime(p, ns=(t, os.lstat(p).st_mtime_ns), follow_symlinks=False)
`, root], {timeoutMs: 60_000})
  if (r.code !== 0) throw new Error(r.stderr)
}

/**
 * Every path below `root` (symlinks not followed) with its type and a regular file's size, by
 * a child process; `hashed`: with its type and mode and a regular file's content hash instead.
 */
export async function listing(root: string, hashed = false): Promise<Record<string, string>> {
  const r = await run(PYTHON, ['-c', `
import hashlib, json, os, stat, sys
root = sys.argv[1]
hashed = sys.argv[2] == '1'
out = {}
for d, subdirs, files in os.walk(root):
    for n in subdirs + files:
        p = os.path.join(d, n)
        st = os.lstat(p)
        if hashed:
            v = oct(st.st_mode)
            if stat.S_ISREG(st.st_mode):
                v += ' ' + hashlib.sha256(open(p, 'rb').read()).hexdigest()[:16]
        else:
            v = str(st.st_size) if stat.S_ISREG(st.st_mode) else oct(stat.S_IFMT(st.st_mode))
        out[os.path.relpath(p, root)] = v
print(json.dumps(out))
`, root, hashed ? '1' : '0'], {timeoutMs: 60_000})
  if (r.code !== 0) throw new Error(r.stderr)
  return JSON.parse(r.stdout) as Record<string, string>
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

/** mount-probe.py: calls in a directory of a mount, from its own process, until told to stop. */
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const CALL_PROBE = path.join(import.meta.dirname, 'mount-probe.py')

export interface ProbeResult {
  calls: number
  p99: number
  max: number
}

/** Runs `work` while the probe makes calls in `dir` (a directory of a mount); the probe's figures. */
export async function probed<T>(dir: string, stopFile: string, work: () => Promise<T>): Promise<{out: T, probe: ProbeResult}> {
  const child = spawn(PYTHON, [CALL_PROBE, dir, stopFile, '--seconds', '120'], {stdio: ['ignore', 'pipe', 'pipe']})
  let text = ''
  let err = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d })
  const ready = new Promise<void>((resolve) => {
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      text += d
      if (text.includes('ready\n')) resolve()
    })
  })
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()))
  await Promise.race([ready, exited])
  let out: T
  try {
    await sleep(200)
    out = await work()
    await sleep(200)
  } finally {
    fs.writeFileSync(stopFile, '')
    await exited
  }
  const last = text.trim().split('\n').pop()!
  if (!last.startsWith('{')) throw new Error(`the probe failed: ${err.trim()}`)
  return {out, probe: JSON.parse(last) as ProbeResult}
}

/** Whether process `pid` has written `bytes` more since this was called (/proc/PID/io). */
export function wrote(pid: number, bytes: number): () => boolean {
  const now = () => Number(/^wchar: (\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/io`, 'utf8'))![1])
  const from = now()
  return () => now() - from >= bytes
}

/** The CLI as a child process that the test may signal. */
export function startCli(args: string[]): {child: ReturnType<typeof spawn>, done: Promise<{code: number | null, stderr: string}>} {
  const child = spawn(process.execPath, [BIN, ...args], {stdio: ['ignore', 'pipe', 'pipe']})
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr += d
  })
  child.stdout!.resume()
  const done = new Promise<{code: number | null, stderr: string}>((resolve) => child.on('close', (code) => resolve({code, stderr})))
  return {child, done}
}

