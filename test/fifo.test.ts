// Host FIFOs named on the command line, through the real CLI: an import reading an archive from
// a FIFO, an export, a cp and a cp -r writing into one. Each waits for the other end as tar and
// cat do; the wait is not spent inside open(2), where no signal is looked at, so SIGINT, SIGTERM
// and SIGHUP stop the command at once with "prism: interrupted" and 128 + the signal, the image
// as it was and the FIFO left in place (once, each waited in open() until the signal's grace
// time was over and ended silently). When the other end comes, the result is that of a regular
// file.
import {expect} from 'chai'
import {execFileSync, spawn} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {BIN, edit, holdsFlock, newImage, prism, read, snapshot, tmpDir} from './helpers.js'

const SIGNO: Record<string, number> = {SIGHUP: 1, SIGINT: 2, SIGTERM: 15}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface Run {
  status: number
  stdout: string
  stderr: string
}

function start(args: string[]): {pid: number, done: Promise<Run>} {
  const child = spawn(process.execPath, [BIN, ...args], {env: {...process.env, PRISM_IMAGE: '', PRISM_NO_BACKGROUND: '1'}, stdio: ['ignore', 'pipe', 'pipe']})
  const out: Buffer[] = []
  const err: Buffer[] = []
  child.stdout.on('data', (b: Buffer) => out.push(b))
  child.stderr.on('data', (b: Buffer) => err.push(b))
  const guard = setTimeout(() => child.kill('SIGKILL'), 60_000) // a hang fails the test
  const done = new Promise<Run>((resolve) => child.on('close', (code, signal) => {
    clearTimeout(guard)
    resolve({status: code ?? 128 + (SIGNO[signal ?? ''] ?? 9), stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString()})
  }))
  return {pid: child.pid!, done}
}

/** Whether process `pid` has `file` open (/proc/PID/fd). */
function hasOpen(pid: number, file: string): boolean {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === file
      } catch {
        return false
      }
    })
  } catch {
    return false
  }
}

async function until(what: string, f: () => boolean): Promise<void> {
  for (let t0 = Date.now(); !f(); await sleep(5)) if (Date.now() - t0 > 30_000) throw new Error(`never: ${what}`)
}

describe('cli: host FIFOs named on the command line wait for their other end, and a signal stops the wait at once', function () {
  this.timeout(120_000)
  let dir: string
  let img: string
  let tar: string
  let initial: string

  const tree = () => JSON.stringify(read(img, (ns) => snapshot(ns)))
  const mkfifo = (name: string) => {
    const p = path.join(dir, name)
    fs.rmSync(p, {force: true})
    execFileSync('mkfifo', [p])
    return p
  }

  before(() => {
    dir = tmpDir('prism-fifo-')
    img = newImage(dir)
    edit(img, (ns) => {
      ns.mkdir('/t')
      for (let i = 0; i < 20; i++) ns.writeFile(`/t/f${i}`, Buffer.from(`file ${i}\n`.repeat(i * 100 + 1)))
      ns.writeFile('/big', Buffer.alloc(3 << 20, 'b')) // more than a pipe holds
    })
    const host = path.join(dir, 'host')
    fs.mkdirSync(path.join(host, 'd'), {recursive: true})
    for (let i = 0; i < 10; i++) fs.writeFileSync(path.join(host, 'd', `h${i}`), `host ${i}\n`)
    tar = path.join(dir, 'in.tar')
    execFileSync('tar', ['cf', tar, '-C', host, 'd'])
    initial = tree()
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  // What waits, how to tell it is waiting, and the signal it gets.
  const WAITERS: Array<{name: string, args: (fifo: string) => string[], waiting: (pid: number, fifo: string) => boolean, sig: keyof typeof SIGNO}> = [
    {name: 'import from a FIFO with no writer', args: (f) => ['import', '-i', img, 'root:/imported', f], waiting: hasOpen, sig: 'SIGINT'},
    {name: 'import from a FIFO with no writer', args: (f) => ['import', '-i', img, 'root:/imported', f], waiting: hasOpen, sig: 'SIGHUP'},
    // (the writers open the FIFO only after the image: they wait once they hold its lock)
    {name: 'export into a FIFO with no reader', args: (f) => ['export', '-i', img, 'root:/t', f], waiting: (pid) => holdsFlock(pid, img), sig: 'SIGINT'},
    {name: 'export into a FIFO with no reader', args: (f) => ['export', '-i', img, 'root:/t', f], waiting: (pid) => holdsFlock(pid, img), sig: 'SIGTERM'},
    {name: 'cp of a file into a FIFO with no reader', args: (f) => ['cp', '-i', img, 'root:/t/f3', f], waiting: (pid) => holdsFlock(pid, img), sig: 'SIGINT'},
    {name: 'cp -r onto a tree holding a FIFO with no reader', args: (f) => ['cp', '-r', '-i', img, 'root:/t', path.dirname(path.dirname(f))], waiting: (pid) => holdsFlock(pid, img), sig: 'SIGINT'},
  ]

  for (const w of WAITERS) {
    it(`${w.name}: ${w.sig} stops it at once, saying so; the image and the FIFO as they were`, async () => {
      const fifo = w.name.startsWith('cp -r') ? (fs.mkdirSync(path.join(dir, 'out', 't'), {recursive: true}), mkfifo('out/t/f5')) : mkfifo('fifo')
      const s = start(w.args(fifo))
      await until('the command waits on the FIFO', () => w.waiting(s.pid, fifo))
      await sleep(150) // (past the open, whichever comes first: the stop must be the same)
      process.kill(s.pid, w.sig)
      const r = await s.done
      expect([r.status, r.stderr]).to.deep.equal([128 + SIGNO[w.sig], 'prism: interrupted\n'])
      expect(fs.lstatSync(fifo).isFIFO(), 'the FIFO is still there').to.equal(true)
      expect(tree()).to.equal(initial)
      expect(prism(['fsck', '-i', img]).status).to.equal(0)
      fs.rmSync(path.join(dir, 'out'), {recursive: true, force: true})
    })
  }

  it('import from a FIFO whose writer comes late: the tree a regular file gives, and one line for an empty or broken archive', async () => {
    const fifo = mkfifo('fifo')
    const s = start(['import', '-i', img, 'root:/imported', fifo])
    await until('the import waits on the FIFO', () => hasOpen(s.pid, fifo))
    await sleep(200)
    fs.writeFileSync(fifo, fs.readFileSync(tar)) // (opens the FIFO for writing: the reader is there)
    const r = await s.done
    expect(r.status, r.stderr).to.equal(0)
    const viaFifo = read(img, (ns) => snapshot(ns))
    expect(prism(['rm', '-r', '-i', img, 'root:/imported']).status).to.equal(0)
    expect(prism(['import', '-i', img, 'root:/imported', tar]).status).to.equal(0)
    expect(read(img, (ns) => snapshot(ns))).to.deep.equal(viaFifo)
    expect(prism(['rm', '-r', '-i', img, 'root:/imported']).status).to.equal(0)
    // a writer that writes nothing, then one that writes no archive
    for (const [data, want] of [[Buffer.alloc(0), /truncated \(at byte 0\)/], [Buffer.from('abc'), /truncated \(at byte 3\)/]] as const) {
      const e = start(['import', '-i', img, 'root:/imported', fifo])
      await until('the import waits on the FIFO', () => hasOpen(e.pid, fifo))
      fs.writeFileSync(fifo, data)
      const x = await e.done
      expect(x.status).to.equal(1)
      expect(x.stderr).to.match(want)
      expect(x.stderr.split('\n').length).to.equal(2)
    }
    expect(tree()).to.equal(initial)
  })

  it('export, cp and cp -r into a FIFO whose reader comes late: the bytes a regular file gets', async () => {
    const reg = path.join(dir, 'reg.tar')
    expect(prism(['export', '-i', img, 'root:/t', reg]).status).to.equal(0)
    const cases: Array<{args: (f: string) => string[], want: () => Buffer, fifo: () => string}> = [
      {args: (f) => ['export', '-i', img, 'root:/t', f], want: () => fs.readFileSync(reg), fifo: () => mkfifo('fifo')},
      {args: (f) => ['cp', '-i', img, 'root:/big', f], want: () => Buffer.alloc(3 << 20, 'b'), fifo: () => mkfifo('fifo')},
      {args: (f) => ['cp', '-r', '-i', img, 'root:/t', path.dirname(path.dirname(f))], want: () => Buffer.from('file 5\n'.repeat(501)),
        fifo: () => (fs.mkdirSync(path.join(dir, 'out', 't'), {recursive: true}), mkfifo('out/t/f5'))},
    ]
    for (const c of cases) {
      const fifo = c.fifo()
      const s = start(c.args(fifo))
      await until('the command holds the image', () => holdsFlock(s.pid, img))
      await sleep(200)
      const got = execFileSync('cat', [fifo], {maxBuffer: 64 << 20})
      const r = await s.done
      expect(r.status, r.stderr).to.equal(0)
      expect(got.equals(c.want()), c.args(fifo).join(' ')).to.equal(true)
      expect(fs.lstatSync(fifo).isFIFO()).to.equal(true)
      fs.rmSync(path.join(dir, 'out'), {recursive: true, force: true})
    }
    expect(tree()).to.equal(initial)
  })
})
