// FUSE mounts seen from outside the server: finding them in /proc/self/mountinfo, telling a
// live mount from a dead one ("Transport endpoint is not connected": its server died) or a
// hung one, lazily unmounting a dead one, and aborting a connection through fusectl.
// It must never touch a mount from this process (no stat, no open): the process may be the
// mount's own server, and a hung server would hang it. A probe runs `stat` in a child process
// with a time limit; unmounts run `umount`/`fusermount3` in a child process.
import {spawn} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

export interface MountInfo {
  /** "major:minor" (st_dev of the mount) */
  device: string
  mountpoint: string
  /** fuse.prism, fuse, fuseblk ... */
  fstype: string
  source: string
  /** per-mount options (rw, nosuid, nodev, relatime ...) */
  options: string[]
  /** superblock options (user_id=, group_id=, default_permissions, allow_other ...) */
  superOptions: string[]
}

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
}

/** Every mount of this process's mount namespace, in mount order. */
export function listMounts(): MountInfo[] {
  const out: MountInfo[] = []
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'latin1').split('\n')) {
    if (!line) continue
    const dash = line.indexOf(' - ')
    if (dash < 0) continue
    const left = line.slice(0, dash).split(' ')
    const right = line.slice(dash + 3).split(' ')
    out.push({
      device: left[2]!,
      mountpoint: unescapeMountinfo(left[4]!),
      options: (left[5] ?? '').split(','),
      fstype: right[0]!,
      source: unescapeMountinfo(right[1] ?? ''),
      superOptions: (right[2] ?? '').split(','),
    })
  }
  return out
}

/**
 * The path as mountinfo shows it: absolute, with the parent's symlinks resolved (the last
 * component is left alone, since resolving it would touch the mount).
 */
export function mountPath(p: string): string {
  const abs = path.resolve(p)
  if (abs === '/') return abs
  let parent = path.dirname(abs)
  try {
    parent = fs.realpathSync(parent)
  } catch {
    // a parent that does not resolve: keep it as given
  }
  return path.join(parent, path.basename(abs))
}

/** The topmost FUSE mount on `mountpoint`, if any. */
export function fuseMountAt(mountpoint: string): MountInfo | undefined {
  const want = mountPath(mountpoint)
  let found: MountInfo | undefined
  for (const m of listMounts()) {
    if (m.mountpoint !== want) continue
    found = m.fstype === 'fuse' || m.fstype.startsWith('fuse.') || m.fstype === 'fuseblk' ? m : undefined
  }
  return found
}

export type MountState = 'none' | 'alive' | 'dead' | 'hung'

/**
 * Runs a command with a time limit. On timeout it is killed and the result comes at once: a
 * process blocked on a FUSE request already sent to a hung server cannot die before the
 * request ends, so waiting for its exit could hang.
 */
function run(cmd: string, args: string[], timeoutMs: number): Promise<{code: number | null, stderr: string, timedOut: boolean}> {
  return new Promise((resolve) => {
    let stderr = ''
    let done = false
    const finish = (r: {code: number | null, stderr: string, timedOut: boolean}): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      resolve(r)
    }
    const child = spawn(cmd, args, {stdio: ['ignore', 'ignore', 'pipe']})
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d
    })
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      finish({code: null, stderr, timedOut: true})
    }, timeoutMs)
    child.on('error', (e) => finish({code: 127, stderr: `${cmd}: ${e.message}`, timedOut: false}))
    child.on('close', (code) => finish({code, stderr, timedOut: false}))
  })
}

/**
 * Whether the FUSE mount on `mountpoint` answers: `stat -f` in a child process, killed after
 * `timeoutMs` ('hung'); "Transport endpoint is not connected" (its server died) or "Software
 * caused connection abort" (its connection was aborted) is 'dead'.
 */
export async function probeMount(mountpoint: string, timeoutMs = 5000): Promise<MountState> {
  const m = fuseMountAt(mountpoint)
  if (m === undefined) return 'none'
  // statfs: always a request to the server (a stat may be answered from attributes the
  // kernel still caches, even on a dead connection)
  const r = await run('stat', ['-f', '-c', '%t', '--', m.mountpoint], timeoutMs)
  if (r.timedOut) return 'hung'
  if (r.code === 0) return 'alive'
  // ENOTCONN: the server died; ECONNABORTED: its connection was aborted (fusectl)
  if (/not connected|connection abort/i.test(r.stderr)) return 'dead'
  return 'alive' // it answered, with an error of its own (EACCES ...)
}

/** The fusectl directory of a connection, mounting fusectl first if needed (root only). */
export async function fusectlDir(device: string): Promise<string | undefined> {
  const [major, minor] = device.split(':').map(Number)
  const id = ((major! << 20) | minor!) >>> 0 // the kernel's dev_t encoding names the entry
  const base = '/sys/fs/fuse/connections'
  if (!fs.existsSync(base)) return undefined
  if (!listMounts().some((m) => m.mountpoint === base)) {
    await run('mount', ['-t', 'fusectl', 'fusectl', base], 5000)
  }
  const dir = path.join(base, String(id))
  return fs.existsSync(dir) ? dir : undefined
}

/**
 * Aborts a FUSE connection (root): every request in flight and to come fails with ENOTCONN,
 * and its server's loop ends. The mount stays, dead, until it is unmounted.
 */
export async function abortConnection(device: string): Promise<boolean> {
  const dir = await fusectlDir(device)
  if (dir === undefined) return false
  try {
    fs.writeFileSync(path.join(dir, 'abort'), '1')
    return true
  } catch {
    return false
  }
}

/**
 * Lazily unmounts the FUSE mount on `mountpoint` in a child process: `umount -l` as root,
 * `fusermount3 -u -z` otherwise. A mount that is gone by the time it fails is not an error.
 */
export async function lazyUnmount(mountpoint: string, timeoutMs = 10_000): Promise<void> {
  const mp = mountPath(mountpoint)
  const r = process.geteuid?.() === 0
    ? await run('umount', ['-l', '--', mp], timeoutMs)
    : await run('fusermount3', ['-u', '-z', '--', mp], timeoutMs)
  if (r.code !== 0 && fuseMountAt(mp) !== undefined) { // gone meanwhile (its server detached it): done
    const why = r.timedOut ? 'timed out' : r.stderr.trim().split('\n').pop() || `exit ${r.code}`
    throw new Error(`cannot unmount ${mp}: ${why}`)
  }
}

/**
 * Cleans up after a FUSE server that died: when the mount on `mountpoint` is dead ("Transport
 * endpoint is not connected"), unmounts it lazily. A hung mount (the server alive but not
 * answering) is aborted first through fusectl only with `force`. A live mount is left alone.
 * Returns what it found.
 */
export async function recoverMount(mountpoint: string, options: {force?: boolean, timeoutMs?: number} = {}): Promise<MountState> {
  const state = await probeMount(mountpoint, options.timeoutMs)
  if (state === 'dead' || (state === 'hung' && options.force)) {
    const m = fuseMountAt(mountpoint)
    if (state === 'hung' && m) await abortConnection(m.device)
    await lazyUnmount(mountpoint)
  }
  return state
}
