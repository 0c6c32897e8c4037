// Read-only commands on a mounted image read a snapshot (issue 17, src/cli/served.ts): while
// `prism cat`, `ls -R`, `scan` and `cp -r` out run on the served image, held open (a pipe
// not read, a slow scan command), calls on the mount keep being answered (a stat and pwrite
// loop keeps going, each call bounded), files are changed through the mount meanwhile, and
// the command's output is the state at its start. With PRISM_SERVED_SNAPSHOT=0 (a lend) the
// mount stalls and these tests fail. A command that writes (a lend) waits for the snapshots
// held; the pre-image log is gone once its reader has ended; a reader whose server dies fails.
import {expect} from 'chai'
import {type ChildProcess, spawn} from 'node:child_process'
import {createHash} from 'node:crypto'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import {BIN, prism} from './helpers.js'
import {socketPath} from '../src/server/paths.js'
import {cli, Scratch, serverPid, skipWithoutFuse} from './mount-support.js'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex')
/** the longest a call on the mount may take while a command runs (a loaded CI machine) */
const CALL_LIMIT_MS = 3000

function within<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout
  return Promise.race([p, new Promise<T>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took more than ${CALL_LIMIT_MS} ms: the mount stalls`)), CALL_LIMIT_MS)
  })]).finally(() => clearTimeout(timer))
}

/** Stats and pwrites on the mount for `ms`: the calls made and the slowest, in ms (throws when one stalls). */
async function probe(dir: string, ms: number): Promise<{calls: number, max: number}> {
  await within(fsp.mkdir(dir, {recursive: true}), 'mkdir')
  const fh = await within(fsp.open(path.join(dir, 'w'), 'w'), 'open')
  let calls = 0
  let max = 0
  try {
    const end = Date.now() + ms
    while (Date.now() < end) {
      const t0 = performance.now()
      await within(fsp.stat(path.join(dir, 'w')), 'stat')
      await within(fh.write(Buffer.from(`call ${calls}\n`), 0, undefined, (calls % 64) * 16), 'pwrite')
      max = Math.max(max, performance.now() - t0)
      calls += 2
    }
  } finally {
    await within(fh.close(), 'close')
  }
  return {calls, max}
}

/** A command started with its stdout a pipe that is read only when asked (the pipe fills and holds it). */
class Held {
  readonly child: ChildProcess
  private chunks: Buffer[] = []
  private readonly ended: Promise<number>
  stderr = ''

  constructor(args: string[]) {
    this.child = spawn(process.execPath, [BIN, ...args], {stdio: ['ignore', 'pipe', 'pipe'], env: {...process.env, PRISM_NO_BACKGROUND: '1'}})
    this.child.stdout!.on('data', (d: Buffer) => this.chunks.push(d))
    this.child.stdout!.pause()
    this.child.stderr!.on('data', (d: Buffer) => { this.stderr += d.toString() })
    this.ended = new Promise((resolve) => this.child.on('close', (code) => resolve(code ?? -1)))
  }

  /** Waits until the command has something to say (it has the image) and then stops reading. */
  async started(): Promise<void> {
    // Paused in the handler of the first chunk: a stream left flowing meanwhile could take the
    // whole output, and the command would be done before the test acts on it.
    const out = this.child.stdout!
    const first = new Promise<void>((resolve) => out.once('data', () => {
      out.pause()
      resolve()
    }))
    out.resume()
    let timer!: NodeJS.Timeout
    await Promise.race([first, new Promise<void>((resolve) => { timer = setTimeout(resolve, 30_000) })])
    clearTimeout(timer)
    out.pause()
    expect(this.chunks.length, `no output: ${this.stderr}`).to.be.greaterThan(0)
  }

  /** Reads the rest: the whole output and the status. */
  async finish(): Promise<{out: Buffer, code: number}> {
    this.child.stdout!.resume()
    const code = await this.ended
    return {out: Buffer.concat(this.chunks), code}
  }

  kill(): void {
    this.child.kill('SIGKILL')
  }
}

/** path -> content hash of every file under a host directory */
function hostFiles(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const e of fs.readdirSync(dir, {recursive: true, withFileTypes: true})) {
    if (e.isFile()) out[path.relative(dir, path.join(e.parentPath, e.name))] = sha(fs.readFileSync(path.join(e.parentPath, e.name)))
  }
  return out
}

describe('read-only commands on a mounted image read a snapshot: the mount keeps answering', function () {
  this.timeout(120_000)
  let s: Scratch
  let mp: string
  let held: Held | null = null
  const tree = (...p: string[]) => path.join(mp, 'root', 'tree', ...p)
  const scanme = (...p: string[]) => path.join(mp, 'scanme', 'sub', ...p)

  before(async function () {
    skipWithoutFuse(this)
    s = new Scratch({size: 128 * 1024 * 1024})
    // A small tree: a file of 8 MiB (more than a pipe holds), 2,500 small files (ls -R -l
    // prints more than a pipe holds), and 12 files of 40 KiB.
    const host = path.join(s.dir, 'tree')
    fs.mkdirSync(path.join(host, 'many'), {recursive: true})
    fs.mkdirSync(path.join(host, 'sub'))
    fs.writeFileSync(path.join(host, 'big'), Buffer.from(Array.from({length: 8 << 20}, (_, i) => (i * 7 + (i >> 12)) & 255)))
    for (let i = 0; i < 2500; i++) fs.writeFileSync(path.join(host, 'many', `f${String(i).padStart(4, '0')}`), `small ${i}\n`)
    for (let i = 0; i < 12; i++) fs.writeFileSync(path.join(host, 'sub', `s${i}`), Buffer.alloc(40960, 65 + i))
    for (const args of [['cp', '-r', host, 'root:/tree'], ['fileset', 'create', 'scanme'], ['cp', '-r', path.join(host, 'sub'), 'scanme:/sub']]) {
      const r = prism([...args, '-i', s.image])
      expect(r.status, r.stderr).to.equal(0)
    }
    mp = s.mountpoint()
    await s.mount(null, mp)
  })

  afterEach(() => {
    held?.kill()
    held = null
  })

  after(async () => {
    await s?.cleanup()
  })

  it('prism cat held by its reader: the mount answers, the file is rewritten meanwhile, cat prints what it held at its start', async () => {
    const before = await fsp.readFile(tree('big'))
    held = new Held(['cat', '-i', s.image, 'root:/tree/big'])
    await held.started()
    await within(fsp.writeFile(tree('big'), Buffer.alloc(8 << 20, 0x5a)), 'rewriting the file')
    const p = await probe(path.join(mp, 'root', 'probe-cat'), 1500)
    expect(p.calls).to.be.greaterThan(10)
    await within(fsp.unlink(tree('big')), 'unlink')
    const r = await held.finish()
    expect(r.code, held.stderr).to.equal(0)
    expect(r.out.length).to.equal(before.length)
    expect(sha(r.out)).to.equal(sha(before))
  })

  it('prism ls -R -l held by its reader: the mount answers, files come and go meanwhile, the listing is the one at its start', async () => {
    const expected = prism(['ls', '-R', '-l', '-i', s.image, 'root:/tree'])
    expect(expected.status, expected.stderr).to.equal(0)
    expect(expected.stdout.length).to.be.greaterThan(100 * 1024) // more than a pipe holds
    held = new Held(['ls', '-R', '-l', '-i', s.image, 'root:/tree'])
    await held.started()
    for (let i = 0; i < 50; i++) await within(fsp.unlink(tree('many', `f${String(i).padStart(4, '0')}`)), 'unlink')
    await within(fsp.writeFile(tree('sub', 'new'), 'new'), 'create')
    const p = await probe(path.join(mp, 'root', 'probe-ls'), 1000)
    expect(p.calls).to.be.greaterThan(10)
    const r = await held.finish()
    expect(r.code, held.stderr).to.equal(0)
    expect(r.out.toString()).to.equal(expected.stdout)
  })

  it('prism scan with a slow command: the mount answers, files are rewritten while it scans, it scans the contents at its start', async () => {
    const expected = new Set<string>()
    for (const n of await fsp.readdir(scanme())) expected.add(sha(await fsp.readFile(scanme(n))))
    const hashes = path.join(s.dir, 'hashes')
    fs.writeFileSync(hashes, '')
    // One call per unique file, each 50 ms at least: the scan holds the snapshot for a while.
    held = new Held(['scan', '-i', s.image, '--exec', `sleep 0.05; sha256sum | cut -c1-64 >> ${hashes}; echo`, 'scanme'])
    const end = Date.now() + 30_000
    while (fs.readFileSync(hashes, 'utf8') === '' && Date.now() < end) await sleep(10)
    for (const n of await fsp.readdir(scanme())) await within(fsp.writeFile(scanme(n), `rewritten ${n}`), 'rewrite')
    const p = await probe(path.join(mp, 'root', 'probe-scan'), 500)
    expect(p.calls).to.be.greaterThan(4)
    const r = await held.finish()
    expect(r.code, held.stderr).to.equal(0)
    const seen = new Set(fs.readFileSync(hashes, 'utf8').trim().split('\n'))
    for (const h of expected) expect(seen.has(h), 'a file of the scan\'s start was not scanned').to.equal(true)
    for (const n of await fsp.readdir(scanme())) expect(seen.has(sha(await fsp.readFile(scanme(n)))), 'a file rewritten after the start was scanned').to.equal(false)
  })

  it('prism scan --incremental: the mount answers while it scans, and what it learned is saved (a second scan reads only what changed)', async () => {
    const calls = path.join(s.dir, 'calls')
    fs.writeFileSync(calls, '')
    // One call per file (12), each 0.4 s: a lend would hold the mount for about 5 s.
    const cmd = `sleep 0.4; cat > /dev/null; echo x >> ${calls}; echo`
    held = new Held(['scan', '-i', s.image, '--incremental', '--json', '--exec', cmd, 'scanme'])
    const end = Date.now() + 30_000
    while (fs.readFileSync(calls, 'utf8') === '' && Date.now() < end) await sleep(10)
    await within(fsp.writeFile(scanme('s0'), 'rewritten during the incremental scan'), 'rewrite')
    const p = await probe(path.join(mp, 'root', 'probe-incremental'), 500)
    expect(p.calls).to.be.greaterThan(4)
    const r = await held.finish()
    expect(r.code, held.stderr).to.equal(0)
    expect(JSON.parse(r.out.toString()).stats.inodesRead).to.equal(12)
    // Saved: the next scan reads only the file rewritten since the first one's start.
    const again = await cli(['scan', '-i', s.image, '--incremental', '--json', '--exec', cmd, 'scanme'])
    expect(again.code, again.stderr).to.equal(0)
    const stats = JSON.parse(again.stdout).stats
    expect({read: stats.inodesRead, cached: stats.cached}).to.deep.equal({read: 1, cached: 11})
  })

  it('prism cp -r out while files change through the mount: the copy is the tree at its start, and the mount answers', async () => {
    await within(fsp.writeFile(tree('big'), Buffer.alloc(8 << 20, 0x33)), 'write')
    const start = path.join(s.dir, 'start')
    fs.mkdirSync(start)
    const r0 = prism(['cp', '-r', '-i', s.image, 'root:/tree/sub', 'root:/tree/big', start])
    expect(r0.status, r0.stderr).to.equal(0)
    const expected = hostFiles(start)
    const out = path.join(s.dir, 'out')
    fs.mkdirSync(out)
    held = new Held(['cp', '-r', '-i', s.image, 'root:/tree/sub', 'root:/tree/big', out])
    // Once the command has its snapshot (its log open), the tree changes.
    const end = Date.now() + 30_000
    const hasLog = () => {
      try {
        return fs.readdirSync(`/proc/${held!.child.pid}/fd`).some((fd) => {
          try {
            return fs.readlinkSync(`/proc/${held!.child.pid}/fd/${fd}`).includes('prism-snap-')
          } catch {
            return false
          }
        })
      } catch {
        return false
      }
    }
    while (!hasLog() && held.child.exitCode === null && Date.now() < end) await sleep(2)
    await within(fsp.writeFile(tree('big'), Buffer.alloc(8 << 20, 0x44)), 'rewrite')
    for (const n of await fsp.readdir(tree('sub'))) await within(fsp.writeFile(tree('sub', n), `rewritten ${n}`), 'rewrite')
    const p = await probe(path.join(mp, 'root', 'probe-cp'), 300)
    expect(p.calls).to.be.greaterThan(2)
    const r = await held.finish()
    expect(r.code, held.stderr).to.equal(0)
    expect(hostFiles(out)).to.deep.equal(expected)
  })

  it('fsck of the mounted image is clean while the mount is written', async () => {
    const writing = probe(path.join(mp, 'root', 'probe-fsck'), 800)
    const r = await cli(['fsck', '-i', s.image])
    expect(r.code, r.stdout + r.stderr).to.equal(0)
    expect(r.stdout).to.match(/^clean/m)
    expect((await writing).calls).to.be.greaterThan(4)
  })

  it('a command that writes waits for the snapshots held, then runs; the log is gone once the reader has ended', async () => {
    await within(fsp.writeFile(tree('big2'), Buffer.alloc(8 << 20, 0x21)), 'write')
    held = new Held(['cat', '-i', s.image, 'root:/tree/big2'])
    await held.started()
    const pid = held.child.pid!
    const logs = () => fs.readdirSync(`/proc/${pid}/fd`).map((fd) => {
      try {
        return fs.readlinkSync(`/proc/${pid}/fd/${fd}`)
      } catch {
        return ''
      }
    }).filter((l) => l.includes('prism-snap-'))
    // Open in the reader, its name already gone (removed as soon as opened).
    expect(logs()).to.have.length(1)
    expect(logs()[0]).to.match(/ \(deleted\)$/)
    let touched = false
    // (a command that borrows the image: touch does with PRISM_SERVED_SLICES=0)
    const touch = cli(['touch', '-i', s.image, 'root:/touched'], {env: {...process.env, PRISM_SERVED_SLICES: '0'}}).then((r) => { touched = true; return r })
    await sleep(700)
    expect(touched, 'a lend did not wait for the snapshot').to.equal(false)
    const r = await held.finish()
    expect(r.code, held.stderr).to.equal(0)
    expect(r.out.equals(Buffer.alloc(8 << 20, 0x21))).to.equal(true)
    const t = await touch
    expect(t.code, t.stderr).to.equal(0)
    expect(fs.readdirSync(path.dirname(socketPath(s.image))).filter((n) => n.startsWith('prism-snap-'))).to.deep.equal([])
  })

  it('a reader whose server dies stops with one line, rather than read what another process may write (last: the mount dies)', async () => {
    held = new Held(['cat', '-i', s.image, 'root:/tree/big2'])
    await held.started()
    process.kill((await serverPid(s.image))!, 'SIGKILL')
    const r = await held.finish()
    expect(r.code).to.equal(7)
    expect(held.stderr).to.match(/^prism: .*the prism server of the image stopped while this command read it/m)
  })
})
