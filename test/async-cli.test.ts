// Asynchronous and lazy clones end to end through the real CLI: a lazy clone read through
// both fast and oclif paths (reads reopen the image for writing to expand on demand),
// progress in `prism status` and `prism fileset list`, `prism expand`, the background
// expander started by `prism clone` (and, after a kill -9, restarted by the next command,
// resuming where it stopped), deleting a source with clones in flight, and the image
// feature bit that keeps builds without async cloning away.
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {edit, newImage, prism, read, tmpDir} from './helpers.js'
import {clone} from '../src/clone/clone.js'
import {INCOMPAT_EXPANDING} from '../src/format/superblock.js'

/**
 * Set once a test has killed an expander (SIGKILL): one killed between a commit and its
 * checkpoint leaves a transaction that every open replays, and says so, until a writer has
 * replayed it for good. That notice is then all stderr may hold.
 */
let killedWriter = false

function ok(r: {status: number, stderr: string, stdout: string}): string {
  expect(killedWriter ? r.stderr.replace(/^prism: replayed \d+ journal transaction\(s\)\n/, '') : r.stderr, r.stderr).to.equal('')
  expect(r.status, r.stderr).to.equal(0)
  return r.stdout
}

const sleeper = new Int32Array(new SharedArrayBuffer(4))
const sleep = (ms: number) => { Atomics.wait(sleeper, 0, 0, ms) }

/** A tree of `dirs` directories two levels deep, a file in each, and a hard link across. */
function populate(img: string, dirs: number): void {
  edit(img, (ns, vol) => {
    ns.mkdir('/etc')
    ns.writeFile('/etc/hostname', Buffer.from('origin\n'))
    for (let i = 0; i < dirs; i++) {
      const d = `/t/d${i % 20}/e${i}`
      ns.mkdir(d, {parents: true})
      ns.writeFile(`${d}/f`, Buffer.from(`file ${i}\n`))
      vol.maybeCommit()
    }
    ns.link('/t/d0/e0/f', '/t/d19/e19/link')
  })
}

/** Lists every path with its content or type, through the CLI. */
function listing(run: (...a: string[]) => {status: number, stdout: string, stderr: string}, fsName: string): string {
  return ok(run('ls', '-R', `${fsName}:/`)).replace(new RegExp(`${fsName}:`, 'g'), 'X:')
}

describe('cli: asynchronous and lazy clones', function () {
  this.timeout(180000)
  let dir: string
  let img: string
  before(() => {
    dir = tmpDir()
    img = newImage(dir, 128 * 1024 * 1024)
    populate(img, 300)
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))
  const run = (...args: string[]) => prism([...args, '-i', img], {cwd: dir})
  const runBg = (...args: string[]) => prism([...args, '-i', img], {cwd: dir, env: {PRISM_NO_BACKGROUND: '0'}})
  const status = () => JSON.parse(ok(run('status', '--json'))) as {expanding: Array<{fileset: string, mode: string, done: number, known: number}>, background: boolean}
  const untilExpanded = (name: string, ms = 60000) => {
    const end = Date.now() + ms
    while (status().expanding.some((c) => c.fileset === name)) {
      if (Date.now() > end) throw new Error(`${name} still expanding after ${ms} ms`)
      sleep(50)
    }
  }

  it('makes a lazy clone that reads on demand, shows progress, and expands on request', () => {
    expect(ok(run('clone', 'root', 'lz', '--mode', 'lazy')).trim()).to.equal('lz')
    const st = status()
    expect(st.expanding).to.have.length(1)
    expect(st.expanding[0]).to.include({fileset: 'lz', mode: 'lazy', done: 0, known: 1})
    // cat (fast path) and ls (oclif) open read-only, meet an unexpanded directory, reopen.
    expect(ok(run('cat', 'lz:/etc/hostname'))).to.equal('origin\n')
    expect(ok(run('ls', 'lz:/t/d3')).split('\n').filter(Boolean)).to.have.length(15)
    const after = status().expanding[0]
    expect(after.done).to.equal(4) // cat expanded / and /etc, ls /t and /t/d3
    const list = JSON.parse(ok(run('fileset', 'list', '--json'))) as Array<{name: string, state: string, expansion?: {done: number}}>
    expect(list.find((f) => f.name === 'lz')).to.deep.include({state: 'expanding'})
    expect(ok(run('fileset', 'list', '--no-space'))).to.match(/lz\s+root\s+\S+ \S+\s+expanding \d+\/\d+/)
    // A lazy clone takes space only for what was visited: far less than a sync clone.
    expect(ok(run('expand', 'lz'))).to.match(/^lz: expanded \d+ directories$/m)
    expect(ok(run('status'))).to.equal('no clone is being expanded\n')
    expect(listing(run, 'lz')).to.equal(listing(run, 'root'))
    expect(ok(run('fsck'))).to.match(/^clean/)
  })

  it('keeps the snapshot while the source changes under an unexpanded clone', () => {
    ok(run('clone', 'root', 'snap', '--mode', 'lazy'))
    const before = listing(run, 'root')
    ok(prism(['write', 'root:/t/d5/e5/f', '-i', img], {cwd: dir, input: 'changed\n'}))
    ok(run('rm', '-r', 'root:/t/d7'))
    ok(run('mv', 'root:/t/d9', 'root:/moved'))
    ok(prism(['write', 'root:/t/d0/e0/f', '-i', img], {cwd: dir, input: 'through a hard link\n'}))
    expect(ok(run('cat', 'snap:/t/d5/e5/f'))).to.equal('file 5\n')
    expect(ok(run('cat', 'snap:/t/d19/e19/link'))).to.equal('file 0\n')
    expect(listing(run, 'snap')).to.equal(before)
    expect(ok(run('fsck'))).to.match(/^clean/)
  })

  it('expands an async clone in the background, and restarts a killed expander', () => {
    expect(ok(runBg('clone', 'root', 'bg')).trim()).to.equal('bg')
    untilExpanded('bg')
    expect(listing(run, 'bg')).to.equal(listing(run, 'root'))

    // Now a slow expander (5 directories a slice, 150 ms apart), killed mid-way twice.
    const slow = {PRISM_NO_BACKGROUND: '0', PRISM_EXPAND_SLICE_DIRS: '5', PRISM_EXPAND_PAUSE_MS: '150'}
    ok(run('clone', 'root', 'bg2', '--no-background'))
    expect(status()).to.deep.include({background: false})
    const expanderPids = () => spawnSync('pgrep', ['-f', `expand --background --image ${img}`], {encoding: 'utf8'}).stdout.trim().split('\n').filter(Boolean).map(Number)
    const progress: number[] = []
    for (let k = 0; k < 2; k++) {
      ok(prism(['ls', 'root:/', '-i', img], {cwd: dir, env: slow})) // any command starts the expander for an async clone
      // Wait until it has committed progress (a niced process on a loaded machine may take a while).
      const before = progress[k - 1] ?? 1
      for (const end = Date.now() + 60000; Date.now() < end;) {
        sleep(100)
        if ((status().expanding.find((x) => x.fileset === 'bg2')?.done ?? 0) > before) break
      }
      const pids = expanderPids()
      expect(pids, 'a running expander').to.have.length(1)
      process.kill(pids[0], 'SIGKILL')
      killedWriter = true
      sleep(100)
      const st = status()
      expect(st.background).to.equal(false)
      const c = st.expanding.find((x) => x.fileset === 'bg2')!
      expect(c, 'bg2 still expanding after the kill').to.not.equal(undefined)
      progress.push(c.done)
    }
    // The second expander went on from what the first had committed.
    expect(progress[0]).to.be.greaterThan(1)
    expect(progress[1]).to.be.greaterThan(progress[0])
    ok(runBg('ls', 'root:/')) // a normal-speed expander resumes and finishes
    untilExpanded('bg2')
    // (the expander that finished replayed what the killed ones left: no notice from here on)
    killedWriter = false
    expect(listing(run, 'bg2')).to.equal(listing(run, 'root'))
    expect(ok(run('fsck'))).to.match(/^clean/)
  })

  it('a background expander stops when its image\'s path leads to another file, and never touches that file', () => {
    const own = tmpDir()
    try {
      const a = newImage(own, 64 * 1024 * 1024)
      populate(a, 120)
      const at = (image: string, ...args: string[]) => prism([...args, '-i', image], {cwd: own})
      ok(at(a, 'clone', 'root', 'bg', '--no-background'))
      // Another image at the same state (its own file, the same filesets), put at a's path later.
      const other = path.join(own, 'other.img')
      fs.copyFileSync(a, other)
      const otherBytes = fs.readFileSync(other)
      const slow = {PRISM_NO_BACKGROUND: '0', PRISM_EXPAND_SLICE_DIRS: '3', PRISM_EXPAND_PAUSE_MS: '100'}
      const done = (image: string) => (JSON.parse(ok(at(image, 'status', '--json'))) as {expanding: Array<{fileset: string, done: number}>}).expanding.find((x) => x.fileset === 'bg')?.done ?? -1
      ok(prism(['ls', 'root:/', '-i', a], {cwd: own, env: slow})) // starts a's expander
      for (const end = Date.now() + 60000; Date.now() < end && done(a) <= 1;) sleep(100)
      expect(done(a), 'the expander committed progress').to.be.greaterThan(1)
      const pids = spawnSync('pgrep', ['-f', `expand --background --image ${a}`], {encoding: 'utf8'}).stdout.trim().split('\n').filter(Boolean).map(Number)
      expect(pids).to.have.length(1)
      const moved = path.join(own, 'moved.img')
      fs.renameSync(a, moved)
      fs.renameSync(other, a)
      // It ends at its next slice, and the file now at its path is as it was.
      for (const end = Date.now() + 30000; Date.now() < end;) {
        try {
          process.kill(pids[0], 0)
          sleep(100)
        } catch {
          break
        }
      }
      expect(() => process.kill(pids[0], 0), 'the expander ended').to.throw()
      expect(fs.readFileSync(a).equals(otherBytes), 'the other file is untouched').to.equal(true)
      // Both images finish expanding on their own and hold root's tree.
      for (const image of [moved, a]) {
        ok(at(image, 'expand', 'bg'))
        expect(listing((...x: string[]) => at(image, ...x), 'bg')).to.equal(listing((...x: string[]) => at(image, ...x), 'root'))
        expect(ok(at(image, 'fsck'))).to.match(/^clean/)
      }
    } finally {
      fs.rmSync(own, {recursive: true, force: true})
    }
  })

  it('deletes a source whose clone is still expanding by finishing that clone first', () => {
    ok(run('fileset', 'create', 'src2'))
    ok(run('cp', '-r', 'root:/etc', 'src2:/etc'))
    ok(run('clone', 'src2', 'child', '--mode', 'lazy'))
    ok(run('fileset', 'delete', 'src2', '--force')) // it has a clone: --force (its clone keeps every file)
    expect(ok(run('cat', 'child:/etc/hostname'))).to.equal('origin\n')
    expect(status().expanding.map((c) => c.fileset)).to.not.include('child')
    expect(ok(run('fsck'))).to.match(/^clean/)
  })

  it('marks the image while a clone is in flight, for builds that do not know them', () => {
    const incompat = () => read(img, (_ns, vol) => vol.sb.incompat)
    ok(run('clone', 'root', 'flag0', '--mode', 'lazy'))
    expect(incompat() & INCOMPAT_EXPANDING).to.equal(INCOMPAT_EXPANDING)
    ok(run('expand', '--all'))
    expect(incompat() & INCOMPAT_EXPANDING).to.equal(0)
    edit(img, (_ns, vol) => { clone(vol, {fileset: 'root', path: '/'}, {fileset: 'flag'}, {mode: 'lazy'}) })
    expect(incompat() & INCOMPAT_EXPANDING).to.equal(INCOMPAT_EXPANDING)
    ok(run('expand', '--all'))
    expect(incompat() & INCOMPAT_EXPANDING).to.equal(0)
  })

  it('leaves nothing to tell an expanded async clone from a sync one: contents, fsck, space', () => {
    ok(run('clone', 'root', 'as-twin', '--no-background'))
    ok(run('clone', 'root', 'sy-twin', '--mode', 'sync'))
    ok(run('expand', 'as-twin'))
    expect(listing(run, 'as-twin')).to.equal(listing(run, 'sy-twin'))
    const list = JSON.parse(ok(run('fileset', 'list', '--json'))) as Array<{name: string, state: string, referenced: number, unique: number, files: number, dirs: number}>
    const pick = (n: string) => { const f = list.find((x) => x.name === n)!; return {state: f.state, referenced: f.referenced, unique: f.unique, files: f.files, dirs: f.dirs} }
    expect(pick('as-twin')).to.deep.equal(pick('sy-twin'))
    const df = () => JSON.parse(ok(run('df', '--json'))) as {blocksUsed: number, inodesUsed?: number}
    const before = df()
    ok(run('fileset', 'delete', 'as-twin'))
    const mid = df()
    ok(run('fileset', 'delete', 'sy-twin'))
    const after = df()
    expect(before.blocksUsed - mid.blocksUsed).to.equal(mid.blocksUsed - after.blocksUsed)
    expect(ok(run('fsck'))).to.match(/^clean/)
  })

  it('rejects bad input with one line and a documented exit code', () => {
    const r = run('expand')
    expect(r.status).to.equal(2)
    expect(r.stderr).to.match(/^prism: name a fileset to expand, or use --all\n$/)
    const n = run('expand', 'nosuch')
    expect(n.status).to.equal(1)
    expect(n.stderr).to.match(/^prism: no fileset named 'nosuch'/)
    const m = run('clone', 'root', 'x', '--mode', 'eager')
    expect(m.status).to.equal(2)
    expect(path.basename(img)).to.equal('disk.img')
  })
})
