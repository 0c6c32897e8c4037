// The model test of `prism mount`: random sequences of filesystem calls (create, write,
// append, truncate, rename, link, symlink, mkdir, rmdir, unlink, chmod, utimens, xattrs, a
// file unlinked while open) run through a mounted fileset and, side by side, in a directory on
// the host that is the model. Several worker processes run at once, each in its own subtree;
// after every round both trees are compared whole (types, modes, sizes, contents, link counts,
// symlink targets, attributes) and every call must have had the same outcome (or errno) on both
// sides. Now and then the fileset is cloned through the CLI while mounted (sync, async or lazy)
// and the clone, mounted by the same server, must show exactly the model as it was then. At the end
// the image is unmounted, fsck must find it clean, and a new mount shows the same tree.
// Environment: PRISM_MOUNT_SEED (replay one run), PRISM_MOUNT_ROUNDS.
import {expect} from 'chai'
import {type ChildProcess, spawn} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {FUSE_TIMEOUT, PYTHON} from './fuse-support.js'
import {cli, cliOk, Scratch, skipWithoutFuse} from './mount-support.js'

const OPS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'mount-ops.py')

type Answer = {ok?: unknown, err?: string}

/** One python worker (test/mount-ops.py) applying calls under one root. */
class Worker {
  private readonly child: ChildProcess
  private buf = ''
  private readonly queue: Array<(a: Answer) => void> = []

  constructor(root: string) {
    this.child = spawn(PYTHON, [OPS, root], {stdio: ['pipe', 'pipe', 'inherit']})
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      this.buf += d
      for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, nl)
        this.buf = this.buf.slice(nl + 1)
        this.queue.shift()?.(JSON.parse(line) as Answer)
      }
    })
  }

  call(req: Record<string, unknown>, timeoutMs = 20_000): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker: ${JSON.stringify(req)} took more than ${timeoutMs} ms (hung mount?)`)), timeoutMs)
      this.queue.push((a) => {
        clearTimeout(timer)
        resolve(a)
      })
      this.child.stdin!.write(JSON.stringify(req) + '\n')
    })
  }

  stop(): void {
    this.child.stdin!.end()
    this.child.kill('SIGKILL')
  }
}

/** mulberry32 */
function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function randomOp(r: () => number, group: string): Record<string, unknown> {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]
  const dirs = ['', '/d', '/e', '/d/f']
  const name = (): string => `${group}${pick(dirs)}/${pick(['a', 'b', 'c', 'd', 'e', 'f'])}`
  const data = (): string => {
    const n = pick([0, 1, 100, 4095, 4096, 5000, 70_000])
    const b = Buffer.alloc(n)
    const v = Math.floor(r() * 256)
    for (let i = 0; i < n; i++) b[i] = (v + i * 7) & 0xff
    return b.toString('hex')
  }
  switch (pick(['create', 'create', 'write', 'append', 'truncate', 'rename', 'link', 'symlink', 'mkdir', 'mkdir', 'rmdir', 'unlink', 'chmod', 'utimens', 'setxattr', 'removexattr', 'unlinkopen', 'read'])) {
    case 'create': return {op: 'create', path: name(), data: data()}
    case 'write': return {op: 'write', path: name(), off: pick([0, 1, 4000, 4096, 100_000]), data: data()}
    case 'append': return {op: 'append', path: name(), data: data()}
    case 'truncate': return {op: 'truncate', path: name(), size: pick([0, 1, 4096, 9000, 300_000])}
    case 'rename': return {op: 'rename', a: name(), b: name()}
    case 'link': return {op: 'link', a: name(), b: name()}
    case 'symlink': return {op: 'symlink', target: pick(['a', '../b', 'nowhere', 'd/c']), b: name()}
    case 'mkdir': return {op: 'mkdir', path: name(), mode: pick([0o755, 0o700, 0o2775])}
    case 'rmdir': return {op: 'rmdir', path: name()}
    case 'unlink': return {op: 'unlink', path: name()}
    case 'chmod': return {op: 'chmod', path: name(), mode: pick([0o600, 0o644, 0o755, 0o4755, 0o1777])}
    case 'utimens': return {op: 'utimens', path: name(), atime: Math.floor(r() * 2e18), mtime: pick([0, 123456789, 1_600_000_000_123_456_789, Math.floor(r() * 2e18)])}
    case 'setxattr': return {op: 'setxattr', path: name(), name: pick(['user.a', 'user.b']), value: pick(['', '01', 'ff'.repeat(300)])}
    case 'removexattr': return {op: 'removexattr', path: name(), name: pick(['user.a', 'user.b'])}
    case 'unlinkopen': return {op: 'unlinkopen', path: name()}
    default: return {op: 'read', path: name()}
  }
}

describe('prism mount: random calls through a mount against a host directory, with clones (model)', function () {
  this.timeout(240_000)
  let s: Scratch
  const workers: Worker[] = []

  before(function () {
    skipWithoutFuse(this)
    s = new Scratch()
  })

  after(async () => {
    for (const w of workers) w.stop()
    await s?.cleanup()
  })

  it('every call has the same outcome and both trees stay the same; each clone shows the model as it was', async function () {
    this.timeout(FUSE_TIMEOUT * 4)
    const seed = Number(process.env.PRISM_MOUNT_SEED ?? Math.floor(Math.random() * 2 ** 31))
    const rounds = Number(process.env.PRISM_MOUNT_ROUNDS ?? 150)
    const r = rng(seed)
    const mp = s.mountpoint('mnt')
    const mp2 = s.mountpoint('clone')
    const host = path.join(s.dir, 'host')
    fs.mkdirSync(host)
    await s.mount('root', mp)
    const groups = ['g0', 'g1', 'g2']
    for (const g of groups) {
      fs.mkdirSync(path.join(host, g))
      await fs.promises.mkdir(path.join(mp, g))
    }
    const mk = (root: string): Worker => {
      const w = new Worker(root)
      workers.push(w)
      return w
    }
    const pairs = groups.map(() => ({m: mk(mp), h: mk(host)}))
    const dumpM = mk(mp)
    const dumpH = mk(host)
    const log: string[] = []
    const where = (): string => `seed ${seed} (PRISM_MOUNT_SEED=${seed}); last calls:\n  ${log.slice(-12).join('\n  ')}`
    let clones = 0
    for (let round = 0; round < rounds; round++) {
      await Promise.all(groups.map(async (g, i) => {
        const req = randomOp(r, g)
        const [a, b] = await Promise.all([pairs[i].m.call(req), pairs[i].h.call(req)])
        log.push(`${JSON.stringify(req).slice(0, 160)} -> mount ${JSON.stringify(a).slice(0, 60)} host ${JSON.stringify(b).slice(0, 60)}`)
        if (req.op === 'utimens' && a.ok && b.ok) {
          // nanoseconds, both times, as set (the host's filesystem may clamp: compare what it kept)
          expect(a.ok, where()).to.deep.equal(b.ok)
        } else {
          expect(a, `round ${round}, ${where()}`).to.deep.equal(b)
        }
      }))
      const [tm, th] = await Promise.all([dumpM.call({op: 'dump'}), dumpH.call({op: 'dump'})])
      expect(tm.err, where()).to.equal(undefined)
      expect(tm.ok, `trees differ after round ${round}, ${where()}`).to.deep.equal(th.ok)

      if (round % 30 === 29) {
        // A clone through the CLI while the fileset is mounted (the server lends it the
        // image), then the clone mounted beside it by the same server.
        const mode = ['sync', 'async', 'lazy'][clones % 3]
        const name = `c${clones++}`
        await cliOk(['clone', '-i', s.image, 'root', name, '--mode', mode])
        await s.mount(name, mp2)
        const wc = mk(mp2)
        const tc = await wc.call({op: 'dump'})
        wc.stop()
        expect(tc.ok, `clone ${name} (${mode}) differs from the model, ${where()}`).to.deep.equal(th.ok)
        await s.umount(mp2)
      }
    }
    for (const w of [...pairs.map((p) => p.m), dumpM]) w.stop()
    const last = (await dumpH.call({op: 'dump'})).ok
    await s.umount(mp)
    const fsck = await cli(['fsck', '-i', s.image])
    expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
    await s.mount('root', mp)
    const w = mk(mp)
    expect((await w.call({op: 'dump'})).ok, `after umount and mount again, ${where()}`).to.deep.equal(last)
    w.stop()
    await s.umount(mp)
  })
})
