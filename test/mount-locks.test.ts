// File locks are the image's, not one mount's: a lock taken through a fileset mount excludes
// one taken through the whole-image mount or a subtree mount of the same image (one server,
// one lock table: src/server/locks.ts), for flock(2) and POSIX (fcntl) locks: exclusive and
// shared, non-blocking conflicts, waits granted when the holder releases or is killed, a waiter
// killed while it waits, byte ranges, F_GETLK naming the holder, EDEADLK, sqlite. The locks are
// taken by child processes (python3, flock(1)): the test process never holds one.
import {expect} from 'chai'
import {type ChildProcess, spawn} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {abortConnection, fuseMountAt} from '../src/fuse/index.js'
import {forceUnmount, run} from './fuse-support.js'
import {cli, cliOk, Scratch, skipWithoutFuse} from './mount-support.js'

const PYTHON = 'python3'

// lock PATH KIND(flock|posix) TYPE(r|w) START LEN WAIT(0|1): prints "locked PID" or "err ERRNO"
// (exit 3), then holds the lock until its standard input ends.
const LOCKER = `
import fcntl, os, struct, sys
path, kind, typ, start, length, wait = sys.argv[1:7]
fd = os.open(path, os.O_RDWR)
try:
    if kind == 'flock':
        op = fcntl.LOCK_SH if typ == 'r' else fcntl.LOCK_EX
        if wait == '0': op |= fcntl.LOCK_NB
        fcntl.flock(fd, op)
    else:
        ty = fcntl.F_RDLCK if typ == 'r' else fcntl.F_WRLCK
        fcntl.fcntl(fd, fcntl.F_SETLKW if wait == '1' else fcntl.F_SETLK, struct.pack('hhqqi4x', ty, 0, int(start), int(length), 0))
except OSError as e:
    print('err', e.errno, flush=True)
    sys.exit(3)
print('locked', os.getpid(), flush=True)
sys.stdin.read()
`

// getlk PATH TYPE START LEN: prints "TYPE START LEN PID" of the lock in the way (type 2: none)
const GETLK = `
import fcntl, os, struct, sys
path, typ, start, length = sys.argv[1:5]
fd = os.open(path, os.O_RDWR)
ty = fcntl.F_RDLCK if typ == 'r' else fcntl.F_WRLCK
r = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack('hhqqi4x', ty, 0, int(start), int(length), 0))
t, w, s, l, pid = struct.unpack('hhqqi4x', r)
print(t, s, l, pid)
`

// waits for a write lock on PATH (KIND), interrupted by SIGALRM after 0.5 s: prints "interrupted ERRNO"
const INTERRUPTED = `
import fcntl, os, signal, struct, sys
class Alarm(Exception): pass
def on_alarm(*_): raise Alarm()
signal.signal(signal.SIGALRM, on_alarm)
fd = os.open(sys.argv[1], os.O_RDWR)
signal.setitimer(signal.ITIMER_REAL, 0.5)
try:
    if sys.argv[2] == 'flock': fcntl.flock(fd, fcntl.LOCK_EX)
    else: fcntl.fcntl(fd, fcntl.F_SETLKW, struct.pack('hhqqi4x', fcntl.F_WRLCK, 0, 0, 0, 0))
    print('locked')
except Alarm:
    print('interrupted', 4)
except OSError as e:
    print('err', e.errno)
`

// close PATH HOW(fork|twofd) CREATE(0|1): opens PATH (creating it with CREATE), write-locks all
// of it (POSIX), prints "locked", and at the next line of standard input closes a descriptor of
// the file while the open file lives on: HOW=fork closes its own after a fork (the child keeps
// it), HOW=twofd opens the file a second time and closes that one. Either close releases the
// process's locks on the file (POSIX). Prints "closed", then waits for standard input to end.
const CLOSER = `
import fcntl, os, struct, sys
path, how, create = sys.argv[1:4]
fd = os.open(path, os.O_RDWR | (os.O_CREAT | os.O_EXCL if create == '1' else 0), 0o644)
fcntl.fcntl(fd, fcntl.F_SETLK, struct.pack('hhqqi4x', fcntl.F_WRLCK, 0, 0, 0, 0))
print('locked', flush=True)
sys.stdin.readline()
if how == 'fork':
    if os.fork() == 0:
        sys.stdin.read()
        os._exit(0)
    os.close(fd)
else:
    os.close(os.open(path, os.O_RDONLY))
print('closed', flush=True)
sys.stdin.read()
`

interface Holder {
  child: ChildProcess
  /** resolves with the first line: "locked PID" or "err ERRNO" */
  line: Promise<string>
  /** the first line so far, '' before it */
  now(): string
  /** ends the holder (closes its stdin: it exits, the kernel releases its locks) */
  release(): Promise<void>
}

const children = new Set<ChildProcess>()

function holder(p: string, kind: 'flock' | 'posix', type: 'r' | 'w', start = 0, len = 0, wait = false): Holder {
  const child = spawn(PYTHON, ['-c', LOCKER, p, kind, type, String(start), String(len), wait ? '1' : '0'], {stdio: ['pipe', 'pipe', 'inherit']})
  children.add(child)
  const exited = new Promise<void>((resolve) => child.on('exit', () => {
    children.delete(child)
    resolve()
  }))
  let first = ''
  const line = new Promise<string>((resolve, reject) => {
    let buf = ''
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d
      const i = buf.indexOf('\n')
      if (i >= 0 && first === '') {
        first = buf.slice(0, i)
        resolve(first)
      }
    })
    child.on('exit', (code) => {
      if (first === '') reject(new Error(`locker exited (${code}) before a line`))
    })
  })
  line.catch(() => {})
  return {
    child, line, now: () => first,
    release: async () => {
      child.stdin!.end()
      await exited
    },
  }
}

/** Tries a lock without waiting: "locked PID" or "err 11". */
async function attempt(p: string, kind: 'flock' | 'posix', type: 'r' | 'w', start = 0, len = 0): Promise<string> {
  const r = await run(PYTHON, ['-c', LOCKER, p, kind, type, String(start), String(len), '0'], {timeoutMs: 20_000})
  return r.stdout.trim()
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`)
    await sleep(50)
  }
}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const t = new Promise<never>((_r, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([p, t])
  } finally {
    clearTimeout(timer)
  }
}

const EAGAIN = 'err 11'
const EDEADLK = 'err 35'

describe('prism mount: locks shared by every mount of an image', function () {
  this.timeout(180_000)
  let s: Scratch
  /** the same file through a fileset mount, the whole-image mount and a subtree mount */
  let via: Record<'fileset' | 'whole' | 'subtree', string>
  let mpFileset: string

  before(async function () {
    skipWithoutFuse(this)
    s = new Scratch()
    await cliOk(['mkdir', '-i', s.image, 'root:/srv'])
    mpFileset = s.mountpoint('a')
    const all = s.mountpoint('all')
    const sub = s.mountpoint('sub')
    await s.mount('root', mpFileset)
    await s.mount(null, all)
    await s.mount('root:/srv', sub)
    via = {fileset: path.join(mpFileset, 'srv/lockf'), whole: path.join(all, 'root/srv/lockf'), subtree: path.join(sub, 'lockf')}
    fs.writeFileSync(via.fileset, 'x'.repeat(100))
  })

  afterEach(() => {
    for (const c of children) c.kill('SIGKILL')
  })

  after(async () => {
    for (const c of children) c.kill('SIGKILL')
    await s?.cleanup()
  })

  for (const kind of ['flock', 'posix'] as const) {
    describe(kind, () => {
      it('an exclusive lock through one mount excludes every other mount; shared locks share', async () => {
        for (const [from, p] of Object.entries(via)) {
          const h = holder(p, kind, 'w')
          expect(await h.line, from).to.match(/^locked /)
          for (const [to, q] of Object.entries(via)) {
            expect(await attempt(q, kind, 'w'), `${from} -> ${to} (w)`).to.equal(EAGAIN)
            expect(await attempt(q, kind, 'r'), `${from} -> ${to} (r)`).to.equal(EAGAIN)
          }
          await h.release()
          for (const q of Object.values(via)) expect(await attempt(q, kind, 'w')).to.match(/^locked /)
        }
        const r = holder(via.whole, kind, 'r')
        expect(await r.line).to.match(/^locked /)
        expect(await attempt(via.subtree, kind, 'r')).to.match(/^locked /)
        expect(await attempt(via.fileset, kind, 'w')).to.equal(EAGAIN)
        await r.release()
      })

      it('a wait through another mount is granted when the holder releases', async () => {
        const h = holder(via.fileset, kind, 'w')
        await h.line
        const w = holder(via.subtree, kind, 'w', 0, 0, true)
        await sleep(500)
        expect(w.now()).to.equal('')
        await h.release()
        expect(await within(w.line, 10_000, 'the wait')).to.match(/^locked /)
        expect(await attempt(via.whole, kind, 'r')).to.equal(EAGAIN)
        await w.release()
      })

      it('a wait is granted when the holder is killed', async () => {
        const h = holder(via.whole, kind, 'w')
        await h.line
        const w = holder(via.fileset, kind, 'w', 0, 0, true)
        await sleep(500)
        expect(w.now()).to.equal('')
        h.child.kill('SIGKILL')
        expect(await within(w.line, 10_000, 'the wait')).to.match(/^locked /)
        await w.release()
      })

      it('a waiter killed while it waits goes (the server answers the interrupt) and the lock goes on working', async () => {
        const h = holder(via.subtree, kind, 'w')
        await h.line
        const w = holder(via.whole, kind, 'w', 0, 0, true)
        await sleep(500)
        const gone = new Promise<void>((resolve) => w.child.on('exit', () => resolve()))
        w.child.kill('SIGKILL')
        await within(gone, 10_000, 'the killed waiter\'s exit')
        // a signal that does not kill: the wait fails with EINTR (Python retries a call a
        // signal interrupted unless the handler raises, as this one does)
        const t = await run(PYTHON, ['-c', INTERRUPTED, via.fileset, kind], {timeoutMs: 20_000})
        expect(t.stdout.trim(), t.stderr).to.equal('interrupted 4') // EINTR
        await h.release()
        expect(await attempt(via.fileset, kind, 'w')).to.match(/^locked /)
      })
    })
  }

  describe('POSIX ranges, F_GETLK, EDEADLK, sqlite', () => {
    it('POSIX byte ranges across mounts: [0,10) and [10,20) by two owners, overlapping ones conflict', async () => {
      const a = holder(via.fileset, 'posix', 'w', 0, 10)
      expect(await a.line).to.match(/^locked /)
      const b = holder(via.whole, 'posix', 'w', 10, 10)
      expect(await b.line).to.match(/^locked /)
      expect(await attempt(via.subtree, 'posix', 'w', 5, 10)).to.equal(EAGAIN)
      expect(await attempt(via.subtree, 'posix', 'r', 9, 1)).to.equal(EAGAIN)
      expect(await attempt(via.subtree, 'posix', 'r', 19, 1)).to.equal(EAGAIN)
      expect(await attempt(via.subtree, 'posix', 'w', 20, 0)).to.match(/^locked /) // 20 to the end
      // flock and POSIX locks do not interact (as on Linux)
      expect(await attempt(via.subtree, 'flock', 'w')).to.match(/^locked /)
      await a.release()
      expect(await attempt(via.subtree, 'posix', 'w', 0, 10)).to.match(/^locked /)
      expect(await attempt(via.subtree, 'posix', 'w', 0, 11)).to.equal(EAGAIN)
      await b.release()
    })

    it('F_GETLK through another mount names the holder\'s pid and range', async () => {
      const h = holder(via.fileset, 'posix', 'w', 30, 10)
      const pid = Number((await h.line).split(' ')[1])
      for (const p of [via.whole, via.subtree]) {
        const r = await run(PYTHON, ['-c', GETLK, p, 'r', '0', '0'], {timeoutMs: 20_000})
        expect(r.stdout.trim(), r.stderr).to.equal(`1 30 10 ${pid}`)
        const none = await run(PYTHON, ['-c', GETLK, p, 'w', '0', '30'], {timeoutMs: 20_000})
        expect(none.stdout.trim().split(' ')[0]).to.equal('2') // F_UNLCK: nothing in the way
      }
      await h.release()
    })

    it('F_SETLKW that would deadlock across mounts fails with EDEADLK', async () => {
      // C holds byte 2 (through the subtree mount), D holds byte 3 (through the fileset mount)
      // and waits for byte 2; then C asks for byte 3: a cycle.
      const c = spawn(PYTHON, ['-c', `
import fcntl, os, struct, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.fcntl(fd, fcntl.F_SETLK, struct.pack('hhqqi4x', fcntl.F_WRLCK, 0, 2, 1, 0))
print('holding', flush=True)
sys.stdin.readline()
try:
    fcntl.fcntl(fd, fcntl.F_SETLKW, struct.pack('hhqqi4x', fcntl.F_WRLCK, 0, 3, 1, 0))
    print('locked', flush=True)
except OSError as e:
    print('err', e.errno, flush=True)
`, via.subtree], {stdio: ['pipe', 'pipe', 'inherit']})
      children.add(c)
      let out = ''
      c.stdout!.setEncoding('utf8').on('data', (x: string) => {
        out += x
      })
      const lines = (): string[] => out.split('\n').filter(Boolean)
      await until(() => lines().length >= 1, 10_000, 'C holding byte 2')
      const d = spawn(PYTHON, ['-c', `
import fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.fcntl(fd, fcntl.F_SETLK, struct.pack('hhqqi4x', fcntl.F_WRLCK, 0, 3, 1, 0))
print('holding', flush=True)
fcntl.fcntl(fd, fcntl.F_SETLKW, struct.pack('hhqqi4x', fcntl.F_WRLCK, 0, 2, 1, 0))
print('locked', flush=True)
`, via.fileset], {stdio: ['ignore', 'pipe', 'inherit']})
      children.add(d)
      let dout = ''
      d.stdout!.setEncoding('utf8').on('data', (x: string) => {
        dout += x
      })
      const dExit = new Promise<void>((resolve) => d.on('exit', () => resolve()))
      await until(() => dout.includes('holding'), 10_000, 'D holding byte 3')
      await sleep(300) // D is waiting now
      c.stdin!.write('\n')
      await until(() => lines().length >= 2, 10_000, 'C\'s answer')
      expect(lines()[1]).to.equal(EDEADLK)
      c.stdin!.end() // C exits: D gets byte 2
      await within(dExit, 10_000, 'D granted and done')
      expect(dout).to.include('locked')
    })

    it('sqlite: a write transaction through one mount keeps another mount\'s writer out', async () => {
      const db = {fileset: path.join(mpFileset, 'srv/t.db'), subtree: via.subtree.replace(/lockf$/, 't.db'), whole: via.whole.replace(/lockf$/, 't.db')}
      await run(PYTHON, ['-c', `import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('create table t(x)'); c.commit(); print(1)`, db.fileset])
      const writer = spawn(PYTHON, ['-c', `
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute('begin exclusive'); c.execute('insert into t values (1)')
print('in', flush=True)
sys.stdin.read()
c.execute('commit')
print('done', flush=True)
`, db.whole], {stdio: ['pipe', 'pipe', 'inherit']})
      children.add(writer)
      let wout = ''
      writer.stdout!.setEncoding('utf8').on('data', (x: string) => {
        wout += x
      })
      const wExit = new Promise<void>((resolve) => writer.on('exit', () => resolve()))
      await until(() => wout.includes('in'), 10_000, 'the writer\'s transaction')
      const tryWrite = `
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=0)
try:
    c.execute('insert into t values (2)'); c.commit(); print('ok')
except sqlite3.OperationalError as e:
    print(e)
`
      for (const p of [db.fileset, db.subtree]) {
        const r = await run(PYTHON, ['-c', tryWrite, p], {timeoutMs: 20_000})
        expect(r.stdout.trim(), r.stderr).to.equal('database is locked')
      }
      writer.stdin!.end()
      await within(wExit, 10_000, 'the writer')
      expect(wout).to.include('done')
      const r = await run(PYTHON, ['-c', tryWrite, db.subtree], {timeoutMs: 20_000})
      expect(r.stdout.trim()).to.equal('ok')
      const count = await run(PYTHON, ['-c', `import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from t').fetchone()[0])`, db.fileset])
      expect(count.stdout.trim()).to.equal('2')
    })
  })

  describe('copy-on-write', () => {
    it('a locked file shared with a clone keeps its locks when a write gives it a new inode; the clone\'s copy is another file', async () => {
      const name = 'srv/cowf'
      fs.writeFileSync(path.join(mpFileset, name), 'shared')
      await cliOk(['clone', '-i', s.image, 'root', 'c1'])
      const whole = path.dirname(path.dirname(path.dirname(via.whole)))
      const h = holder(path.join(path.dirname(via.subtree), 'cowf'), 'posix', 'w', 0, 0)
      await h.line
      // a write through another mount makes root's file private: a new inode number (the
      // clone keeps the old one, and what it held)
      fs.appendFileSync(path.join(whole, 'root', name), ' written')
      expect(fs.readFileSync(path.join(whole, 'c1', name), 'utf8')).to.equal('shared')
      expect(fs.readFileSync(path.join(mpFileset, name), 'utf8')).to.equal('shared written')
      for (const p of [path.join(mpFileset, name), path.join(whole, 'root', name)]) expect(await attempt(p, 'posix', 'w')).to.equal(EAGAIN)
      expect(await attempt(path.join(whole, 'c1', name), 'posix', 'w')).to.match(/^locked /)
      await h.release()
      expect(await attempt(path.join(mpFileset, name), 'posix', 'w')).to.match(/^locked /)
    })
  })

  describe('a close releases its process\'s POSIX locks', () => {
    // The kernel tells a close by a flush only. Opens used to be answered "no flush" unless the
    // file had held a POSIX lock before: a lock taken after the open then outlived the close of
    // any descriptor (a fork's child kept the file open; a second descriptor closed), and other
    // processes waited on it until the last close. Each case runs on a mount through which no
    // POSIX lock was ever taken before the file was opened.
    for (const how of ['fork', 'twofd'] as const) {
      for (const create of [false, true]) {
        it(`${how === 'fork' ? 'the parent closes after a fork' : 'a second descriptor is closed'}, the file ${create ? 'made by the open' : 'opened'}`, async () => {
          const mp = s.mountpoint(`close-${how}-${create ? 'c' : 'o'}`)
          await s.mount('root:/srv', mp)
          const name = `close-${how}-${create ? 'c' : 'o'}`
          if (!create) fs.writeFileSync(path.join(mpFileset, 'srv', name), 'x')
          const child = spawn(PYTHON, ['-c', CLOSER, path.join(mp, name), how, create ? '1' : '0'], {stdio: ['pipe', 'pipe', 'inherit']})
          children.add(child)
          const lines: string[] = []
          child.stdout!.setEncoding('utf8').on('data', (d: string) => lines.push(...d.split('\n').filter(Boolean)))
          const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()))
          await until(() => lines.length >= 1, 20_000, 'the lock')
          expect(lines[0]).to.equal('locked')
          for (const p of [path.join(mpFileset, 'srv', name), path.join(mp, name)]) expect(await attempt(p, 'posix', 'w')).to.equal(EAGAIN)
          child.stdin!.write('\n')
          await until(() => lines.length >= 2, 20_000, 'the close')
          expect(lines[1]).to.equal('closed')
          // the file is still open (by the child, or by the first descriptor): the lock is gone all the same
          for (const p of [path.join(mpFileset, 'srv', name), path.join(mp, name)]) expect(await attempt(p, 'posix', 'w'), p).to.match(/^locked /)
          child.stdin!.end()
          await within(exited, 20_000, 'the closer\'s exit')
          children.delete(child)
          await cliOk(['umount', mp])
        })
      }
    }
  })

  describe('last: the mounts going away', () => {
    it('a lock held through a mount that goes away is released; the image is clean after', async () => {
      const extra = s.mountpoint('extra')
      await s.mount('root:/srv', extra)
      const h = holder(path.join(extra, 'lockf'), 'posix', 'w')
      await h.line
      expect(await attempt(via.fileset, 'posix', 'w')).to.equal(EAGAIN)
      // the connection aborted while the holder lives on: the server's session ends
      const device = fuseMountAt(extra)?.device
      expect(device).to.be.a('string')
      expect(await abortConnection(device!)).to.equal(true)
      let got = ''
      for (let i = 0; i < 50 && !got.startsWith('locked'); i++) {
        got = await attempt(via.fileset, 'posix', 'w')
        if (!got.startsWith('locked')) await sleep(100)
      }
      expect(got).to.match(/^locked /)
      h.child.kill('SIGKILL')
      await forceUnmount(extra)
      for (const kind of ['flock', 'posix'] as const) expect(await attempt(via.whole, kind, 'w')).to.match(/^locked /)
      for (const mp of [mpFileset, path.dirname(path.dirname(path.dirname(via.whole))), path.dirname(via.subtree)]) await cliOk(['umount', mp])
      const fsck = await cli(['fsck', '-i', s.image])
      expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
    })
  })
})
