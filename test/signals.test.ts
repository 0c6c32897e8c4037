// Long commands on hostile terminals and under signals (issue 15, point 1), through the real
// CLI. Progress is drawn only on a terminal that can show it: a pseudo-terminal of 0 or 1
// columns, or stderr redirected while stdout is a terminal, gets no escape code and every
// command finishes (test/pty-run.py kills a command that hangs, and the test fails).
// SIGINT, SIGTERM and SIGHUP (and Ctrl-C typed on the terminal) during each long command
// stop it with one line, `prism: interrupted`, and status 128 + the signal; its running
// transaction is dropped (the image is as before: byte for byte for a command that only
// reads, tree for tree and fsck-clean for one that writes) and the lock is released at once.
// A command blocked where it cannot look for the signal (reading stdin) ends by the signal
// within the native watchdog's grace time, never hangs, and leaves the image as before.
import {expect} from 'chai'
import {spawn, spawnSync, type ChildProcess} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {BIN, ROOT, holdImageLock, holdsFlock, imageContents, newImage, prism, sha256File, tmpDir} from './helpers.js'
import {namespace, withImage} from '../src/fs/image.js'
import {clone} from '../src/clone/clone.js'

const PTY = path.join(ROOT, 'test', 'pty-run.py')
const DIRS = 40
const FILES_PER_DIR = 1000
/** Each run is killed after this long: a command that hangs fails its test. */
const RUN_TIMEOUT_S = 60
const ESC = '\u001b'
const SIGNO: Record<string, number> = {SIGHUP: 1, SIGINT: 2, SIGTERM: 15}

interface Run {
  status: number
  /** what reached the terminal (or stdout's pipe) */
  out: string
  /** stderr, when it went to a file */
  err: string
  ms: number
}

interface Started {
  pid: Promise<number>
  done: Promise<Run>
  child: ChildProcess
}

type Terminal = {kind: 'pty', cols: number, stderrToFile?: boolean} | {kind: 'pipe'}

/**
 * Starts `prism ARGS` (cwd `dir`): on a pseudo-terminal of `cols` columns (stderr on it too,
 * or in a file), or with stdout a pipe and stderr a file. stdin is the terminal, or a pipe
 * the test holds open.
 */
function start(dir: string, args: string[], term: Terminal, env: Record<string, string> = {}): Started {
  const errFile = path.join(dir, `err-${process.hrtime.bigint()}`)
  const pidFile = `${errFile}.pid`
  const fullEnv: Record<string, string | undefined> = {...process.env, PRISM_IMAGE: '', PRISM_NO_BACKGROUND: '1', ...env}
  if (!('CI' in env)) delete fullEnv.CI // progress would be off under CI: test the terminal alone
  const t0 = Date.now()
  let child: ChildProcess
  if (term.kind === 'pty') {
    const extra = term.stderrToFile ? ['--stderr', errFile] : []
    child = spawn('python3', [PTY, '--cols', String(term.cols), '--timeout', String(RUN_TIMEOUT_S), '--pidfile', pidFile, ...extra, '--', process.execPath, BIN, ...args],
      {cwd: dir, env: fullEnv, stdio: ['ignore', 'pipe', 'inherit']})
  } else {
    const err = fs.openSync(errFile, 'w')
    child = spawn(process.execPath, [BIN, ...args], {cwd: dir, env: fullEnv, stdio: ['pipe', 'pipe', err]})
    fs.closeSync(err)
    fs.writeFileSync(pidFile, String(child.pid))
  }
  const chunks: Buffer[] = []
  child.stdout!.on('data', (b: Buffer) => chunks.push(b))
  // The test's own guard, beyond pty-run.py's: never wait for a hung run.
  const guard = setTimeout(() => {
    const pid = readPid(pidFile)
    if (pid) try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
    child.kill('SIGKILL')
  }, (RUN_TIMEOUT_S + 30) * 1000)
  const done = new Promise<Run>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(guard)
      const status = code ?? 128 + (SIGNO[signal ?? ''] ?? 9)
      const err = fs.existsSync(errFile) ? fs.readFileSync(errFile, 'utf8') : ''
      resolve({status, out: Buffer.concat(chunks).toString(), err, ms: Date.now() - t0})
    })
  })
  const pid = (async () => {
    for (let i = 0; i < 5000; i++) {
      const p = readPid(pidFile)
      if (p) return p
      await sleep(2)
    }
    throw new Error('the command did not start')
  })()
  return {pid, done, child}
}

function readPid(file: string): number | null {
  try {
    return Number(fs.readFileSync(file, 'utf8')) || null
  } catch {
    return null
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** The file a process waiting for the image's lock holds a lock on (src/device/file.ts). */
function waitFile(img: string): string {
  const st = fs.statSync(img)
  return path.join(os.tmpdir(), `prism-wait-${st.dev}-${st.ino}.lock`)
}

/** Waits until `pid` holds a lock on `img`: from then on it is working on the image. */
async function whenLocked(s: Started, img: string): Promise<number> {
  const pid = await s.pid
  const t0 = Date.now()
  for (;;) {
    if (fs.existsSync(img) && holdsFlock(pid, img)) return pid
    if (Date.now() - t0 > 30_000) throw new Error('the command never took the image lock')
    if (s.child.exitCode !== null) throw new Error('the command ended before it took the image lock')
    await sleep(1)
  }
}

/** The image every test starts from (a copy of it), once known: its hash and contents(). */
const baseImage = {sha: '', contents: ''}

/** Everything a user can see in the image, without changing it. */
function contents(img: string): string {
  // An image byte for byte as the base one holds what it holds (reading every fileset of the
  // base's 120,000 files takes seconds; hashing the image a fraction of one).
  if (baseImage.sha && sha256File(img) === baseImage.sha) return baseImage.contents
  return imageContents(img)
}

function copyImage(from: string, to: string): void {
  const r = spawnSync('cp', ['--sparse=always', from, to])
  expect(r.status, r.stderr?.toString()).to.equal(0)
}

function noEscapes(text: string, what: string): void {
  expect(text.includes(ESC), `${what} holds escape codes: ${JSON.stringify(text.slice(0, 200))}`).to.equal(false)
}

describe('cli: progress only where it can be shown, and clean stops on signals', function () {
  this.timeout(600_000)
  let dir: string
  let base: string
  let baseContents: string
  let hostTree: string
  const before_ = () => {
    dir = tmpDir('prism-signals-')
    // An image whose journal holds a whole import of the host tree in one transaction (so an
    // interrupted import leaves nothing), with a tree large enough that each long command
    // below works for a good fraction of a second, and a lazy clone to expand.
    base = newImage(dir, 256 * 1024 ** 2, {inodeCount: 120_000, journalBlocks: 16384})
    withImage(base, {write: true}, (vol) => {
      const ns = namespace(vol, 'root')
      for (let d = 0; d < DIRS; d++) {
        ns.mkdir(`/t/d${d}`, {parents: true})
        for (let f = 0; f < FILES_PER_DIR; f++) ns.writeFile(`/t/d${d}/f${f}`, Buffer.from(`file ${d}/${f}\n`))
        vol.maybeCommit()
      }
      ns.writeFile('/t/eicar-ish', Buffer.from('prism-test-signature\n'))
    })
    withImage(base, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: 'lazy'}, {mode: 'lazy'}))
    withImage(base, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: 'spare'}, {mode: 'sync'}))
    baseContents = contents(base)
    baseImage.sha = sha256File(base)
    baseImage.contents = baseContents
    fs.writeFileSync(path.join(dir, 'sigs.ndb'), `Prism.Test:0:*:${Buffer.from('prism-test-signature').toString('hex')}\n`)
    hostTree = path.join(dir, 'host')
    for (let d = 0; d < 20; d++) {
      fs.mkdirSync(path.join(hostTree, `h${d}`), {recursive: true})
      for (let f = 0; f < 1000; f++) fs.writeFileSync(path.join(hostTree, `h${d}`, `f${f}`), `host ${d}/${f}\n`)
    }
  }
  before(before_)
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  let n = 0
  const fresh = () => {
    const img = path.join(dir, `img-${n++}.img`)
    copyImage(base, img)
    return img
  }
  const rm = (img: string) => fs.rmSync(img, {force: true})

  // The long commands: what each is given, and whether it only reads the image.
  const LONG: Array<{name: string, args: (img: string) => string[], readOnly: boolean}> = [
    {name: 'cp -r (import)', args: (img) => ['cp', '-r', '-i', img, hostTree, 'root:/imported'], readOnly: false},
    {name: 'cp -r (export)', args: (img) => ['cp', '-r', '-i', img, 'root:/t', path.join(dir, `out-${n++}`)], readOnly: true},
    {name: 'fsck', args: (img) => ['fsck', '-i', img], readOnly: true},
    {name: 'fsck --repair', args: (img) => ['fsck', '--repair', '-i', img], readOnly: false},
    {name: 'scan', args: (img) => ['scan', 'root', '-s', path.join(dir, 'sigs.ndb'), '-i', img], readOnly: true},
    {name: 'scan --incremental', args: (img) => ['scan', 'root', '-s', path.join(dir, 'sigs.ndb'), '--incremental', '-i', img], readOnly: false},
    {name: 'expand', args: (img) => ['expand', 'lazy', '-i', img], readOnly: false},
    {name: 'clone --mode sync', args: (img) => ['clone', 'root', 'c', '--mode', 'sync', '-i', img], readOnly: false},
    {name: 'fileset delete', args: (img) => ['fileset', 'delete', 'spare', '-i', img], readOnly: false},
    {name: 'ls -R', args: (img) => ['ls', '-R', '-i', img, 'root:/t'], readOnly: true},
    {name: 'du', args: (img) => ['du', '-i', img, 'root:/t'], readOnly: true},
    {name: 'diff', args: (img) => ['diff', '-i', img, 'root', 'spare'], readOnly: true},
  ]
  const okStatus = (name: string) => (name.startsWith('scan') ? 1 : 0) // the test signature is found

  describe('finishes, with no escape code, where progress cannot be shown', () => {
    const terms: Array<{label: string, term: Terminal}> = [
      {label: 'a terminal of 0 columns', term: {kind: 'pty', cols: 0}},
      {label: 'a terminal of 1 column', term: {kind: 'pty', cols: 1}},
      {label: 'stdout a terminal, stderr redirected to a file', term: {kind: 'pty', cols: 80, stderrToFile: true}},
      {label: 'stdout a pipe, stderr redirected to a file', term: {kind: 'pipe'}},
    ]
    for (const {label, term} of terms) {
      for (const cmd of LONG.filter((c) => ['cp -r (import)', 'fsck', 'scan', 'expand'].includes(c.name))) {
        it(`${cmd.name} on ${label}`, async () => {
          const img = fresh()
          const r = await start(dir, cmd.args(img), term).done
          expect(r.status, r.out + r.err).to.equal(okStatus(cmd.name))
          noEscapes(r.out, 'the terminal')
          noEscapes(r.err, 'the stderr file')
          rm(img)
        })
      }
    }

    it('draws progress on stderr on a terminal wide enough, and nothing with --json', async () => {
      const img = fresh()
      const drawn = await start(dir, ['fsck', '-i', img], {kind: 'pty', cols: 80}).done
      expect(drawn.status).to.equal(0)
      expect(drawn.out).to.include(`${ESC}[`) // the control: a terminal that can show it gets it
      expect(drawn.out).to.match(/clean: /)
      const json = await start(dir, ['fsck', '--json', '-i', img], {kind: 'pty', cols: 80}).done
      expect(json.status).to.equal(0)
      noEscapes(json.out, '--json output')
      rm(img)
    })
  })

  describe('stops cleanly on a signal: the running transaction dropped, the image as before, the lock released', () => {
    const check = async (cmd: typeof LONG[number], img: string, r: Run, signo: number, before: string) => {
      expect(r.status, `${cmd.name}: ${r.out}${r.err}`).to.equal(128 + signo)
      // (on a terminal, the ^C the terminal echoes comes first)
      expect(r.err || r.out.replace(/\r\n/g, '\n').replace(/^\^C/, '')).to.equal('prism: interrupted\n')
      noEscapes(r.err, 'the stderr file')
      if (cmd.readOnly) expect(sha256File(img), 'the image changed').to.equal(before)
      else expect(contents(img), 'what the image holds changed').to.equal(baseContents)
      // The lock is free at once, and the image is sound.
      const next = prism(['fsck', '-i', img, '--wait', '0'])
      expect(next.status, next.stdout + next.stderr).to.equal(0)
    }

    // SIGINT and SIGTERM reach the same handler (src/cli/signals.ts): every command gets
    // SIGINT; SIGTERM goes to one command of each kind (an import's one transaction, a repair,
    // a clone's staged tree, a read-only command), which keeps this file's time in bounds.
    const TERM = new Set(['cp -r (import)', 'fsck --repair', 'clone --mode sync', 'cp -r (export)'])
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      for (const cmd of LONG.filter((c) => sig === 'SIGINT' || TERM.has(c.name))) {
        it(`${cmd.name}: ${sig}`, async () => {
          const img = fresh()
          const before = sha256File(img)
          const s = start(dir, cmd.args(img), {kind: 'pipe'})
          process.kill(await whenLocked(s, img), sig)
          await check(cmd, img, await s.done, SIGNO[sig], before)
          rm(img)
        })
      }
    }

    it('cp -r (import): SIGHUP', async () => {
      const img = fresh()
      const s = start(dir, LONG[0].args(img), {kind: 'pipe'})
      process.kill(await whenLocked(s, img), 'SIGHUP')
      await check(LONG[0], img, await s.done, 1, '')
      rm(img)
    })

    // Ctrl-C typed on a terminal of 0 columns for each command, of 1 column for two of them.
    for (const cols of [0, 1]) {
      for (const cmd of LONG.filter((c) => (cols === 0 ? ['cp -r (import)', 'fsck', 'scan', 'expand'] : ['fsck', 'expand']).includes(c.name))) {
        it(`${cmd.name}: Ctrl-C on a terminal of ${cols} column(s)`, async () => {
          const img = fresh()
          const before = sha256File(img)
          const s = start(dir, cmd.args(img), {kind: 'pty', cols})
          await whenLocked(s, img)
          s.child.kill('SIGUSR1') // pty-run.py types Ctrl-C: the terminal sends SIGINT
          const r = await s.done
          noEscapes(r.out, 'the terminal')
          await check(cmd, img, r, 2, before)
          rm(img)
        })
      }
    }

    // An export is written beside its name and renamed over it when whole: a signal leaves no
    // archive (a new name), or the file that was there (an existing one), and nothing beside.
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      for (const target of ['a new .tar', 'an existing .tar.gz'] as const) {
        if (sig !== 'SIGINT' && target === 'a new .tar') continue
        it(`export to ${target}: ${sig} leaves ${target === 'a new .tar' ? 'no archive' : 'the file as it was'}, nothing beside it, the image as before`, async () => {
          const img = fresh()
          const before = sha256File(img)
          const out = path.join(dir, `ex-${n++}`)
          fs.mkdirSync(out)
          const archive = path.join(out, target === 'a new .tar' ? 'new.tar' : 'old.tar.gz')
          if (target !== 'a new .tar') fs.writeFileSync(archive, 'the archive of yesterday\n', {mode: 0o600})
          const s = start(dir, ['export', 'root', archive, '-i', img], {kind: 'pipe'})
          await whenLocked(s, img)
          await sleep(300) // writing by now
          process.kill(await s.pid, sig)
          const r = await s.done
          expect([r.status, r.err]).to.deep.equal([128 + SIGNO[sig], 'prism: interrupted\n'])
          expect(fs.readdirSync(out)).to.deep.equal(target === 'a new .tar' ? [] : ['old.tar.gz'])
          if (target !== 'a new .tar') expect(fs.readFileSync(archive, 'utf8')).to.equal('the archive of yesterday\n')
          expect(sha256File(img)).to.equal(before)
          // Whole, it replaces the file, keeping its mode.
          if (target !== 'a new .tar') {
            expect(prism(['export', 'root:/t/d0', archive, '-i', img]).status).to.equal(0)
            expect(spawnSync('tar', ['tzf', archive]).stdout.toString()).to.include('./f0')
            expect(fs.statSync(archive).mode & 0o777).to.equal(0o600)
            expect(fs.readdirSync(out)).to.deep.equal(['old.tar.gz'])
          }
          rm(img)
        })
      }
    }

    // GNU timeout sends its signal to the command and then to its process group, which holds
    // the command: two signals microseconds apart are one request (a trial's export was
    // killed by the second, leaving its temporary archive). Two a hand makes, a quarter of a
    // second or more apart, still end the process at once (native/sys.c SAME_REQUEST_NS).
    it('the same signal twice at once (as GNU timeout sends it) is one request: the export stops cleanly', () => {
      const img = fresh()
      const before = sha256File(img)
      let stopped = 0
      for (const after of ['0.4', '0.5', '0.6', '0.7', '0.8']) {
        const out = path.join(dir, `ex-${n++}`)
        fs.mkdirSync(out)
        const archive = path.join(out, 'new.tar.gz') // (compressed: slower, a wider window)
        const r = spawnSync('timeout', ['--preserve-status', '-s', 'INT', after, process.execPath, BIN, 'export', 'root', archive, '-i', img],
          {cwd: dir, env: {...process.env, PRISM_IMAGE: '', PRISM_NO_BACKGROUND: '1'}, encoding: 'utf8'})
        if (r.status === 0) {
          // (done before the signals: the archive whole)
          expect(spawnSync('tar', ['tzf', archive]).status, after).to.equal(0)
          continue
        }
        stopped++
        expect([r.status, r.stderr], after).to.deep.equal([130, 'prism: interrupted\n'])
        expect(fs.readdirSync(out), after).to.deep.equal([])
      }
      expect(stopped).to.be.greaterThan(2)
      expect(sha256File(img)).to.equal(before)
      rm(img)
    })

    it('a command waiting for the lock stops at once', async () => {
      const img = fresh()
      const holder = await holdImageLock(img) // another process in the middle of a long write
      const waiter = start(dir, ['ls', '-i', img, '--wait', '60', 'root:/'], {kind: 'pipe'})
      // It waits once it announces so (a shared lock on the image's 'wait' file).
      await whenLocked(waiter, waitFile(img))
      process.kill(await waiter.pid, 'SIGINT')
      const r = await waiter.done
      expect(r.status, r.err).to.equal(130)
      expect(r.err).to.equal('prism: interrupted\n')
      expect(r.ms).to.be.below(5000)
      await holder.release()
      expect(prism(['ls', '-i', img, '--wait', '0', 'root:/']).status).to.equal(0)
      rm(img)
    })

    // A command waiting for its input (nothing held yet) stops at once, by the command's own
    // path: "prism: interrupted" and 128 + the signal (src/interrupt.ts interruptible), not by
    // the signal's default action once the grace time is over, which says nothing.
    const STDIN_READERS = [
      {name: 'write', args: (img: string) => ['write', '-i', img, 'root:/t/d0/f0'], input: 'partial input that is never finished\n'},
      {name: 'import -', args: (img: string) => ['import', '-i', img, 'root:/imported', '-'], input: 'tar'},
    ]
    /** 1 MiB of the input: text for write; for import, the start of a tar of a 4 MiB file (not its end). */
    const inputOf = (kind: string): Buffer => {
      if (kind !== 'tar') return Buffer.alloc(1 << 20, kind)
      fs.writeFileSync(path.join(dir, 'big'), Buffer.alloc(4 << 20, 'x'))
      return spawnSync('tar', ['cf', '-', '-C', dir, 'big'], {maxBuffer: 16 << 20}).stdout.subarray(0, 1 << 20)
    }
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      for (const cmd of STDIN_READERS.filter((c) => sig === 'SIGINT' || c.name === 'write')) {
        it(`${cmd.name}: a command blocked reading stdin stops at once on ${sig}, saying so, leaving the image as before`, async () => {
          const img = fresh()
          const s = start(dir, cmd.args(img), {kind: 'pipe'})
          // More input than a pipe holds: once the write is taken whole, the command is reading
          // its input (which it does before it locks the image, so a reader never waits for it).
          await new Promise<void>((r) => s.child.stdin!.write(inputOf(cmd.input), () => r()))
          const pid = await s.pid
          await sleep(100)
          expect(prism(['cat', '-i', img, '--wait', '0', 'root:/t/d0/f0']).stdout, 'a reader while the writer reads its input').to.equal('file 0/0\n')
          process.kill(pid, sig)
          const r = await s.done
          expect([r.status, r.err]).to.deep.equal([128 + SIGNO[sig], 'prism: interrupted\n'])
          expect(contents(img)).to.equal(baseContents)
          const next = prism(['cat', '-i', img, '--wait', '0', 'root:/t/d0/f0'])
          expect(next.stdout).to.equal('file 0/0\n')
          rm(img)
        })
      }
    }
  })

  it('the native addon is built and catches the signals (not a silent fallback to the default action)', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', `
      import {sys} from ${JSON.stringify(path.join(ROOT, 'src', 'sys.ts'))}
      const st = sys().catchSignals(1500, 10000)
      process.kill(process.pid, 'SIGTERM')
      const t = Date.now(); while (Date.now() - t < 200) {}
      console.log(JSON.stringify(Array.from(st)))
    `], {cwd: ROOT, encoding: 'utf8'})
    expect(r.status, r.stderr).to.equal(0)
    expect(JSON.parse(r.stdout)).to.deep.equal([15, 0, 1, 0])
  })
})
