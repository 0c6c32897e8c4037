// Calls at the same moment through different mounts of one image. Each change made through one
// mount is told to the other mounts' kernels before it is answered, and telling a kernel about
// an entry takes that kernel's lock of its directory. A mkdir through each of two mounts of one
// fileset, at once in one directory, used to deadlock: each answer waited on the other kernel,
// whose directory lock the other mkdir held until its own answer. Both processes stayed in D
// state and only a fusectl abort freed them. The server now never lets two answers wait on each
// other this way (ServedImage.notify).
//
// test/mount-concurrent.py runs the calls: one process per view, a barrier before each call, so
// that every kind of call that changes a directory (mkdir, create, symlink, mkfifo, link,
// rename within and across directories, unlink, rmdir) or an inode (chmod, setxattr, write,
// utimes) runs through every view at once. Views: two mounts of a fileset; a fileset mount,
// the whole-image mount and a FILESET:/path mount (three, so that the waits could form a ring);
// two mounts of a lazy clone, whose lookups expand it as they go. A hang fails the test by its
// time limit (the cleanup then aborts the mounts). After the calls, every view lists the same
// names, the shared file reads the same through each, and once unmounted the image is clean and
// the CLI lists every name made.
import {expect} from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {cli, cliOk, run, Scratch, skipWithoutFuse} from './mount-support.js'

const WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'mount-concurrent.py')
const ROUNDS = 25

/** The names the worker leaves in a/ after ROUNDS rounds of `procs` processes (b/ ends empty). */
function expectedNames(procs: number): string[] {
  const names: string[] = []
  for (let k = 0; k < ROUNDS; k++) for (let p = 0; p < procs; p++) names.push(`s${k}-${p}`, `p${k}-${p}`, `y${k}-${p}`)
  return names.sort()
}

describe('prism mount: the same calls at once through several mounts of one image', function () {
  this.timeout(240_000)
  let s: Scratch

  before(function () {
    skipWithoutFuse(this)
  })

  afterEach(async () => {
    await s?.cleanup()
  })

  /** Runs the worker on `views` (mounted), then checks what each view and, unmounted, the image hold. */
  async function check(views: string[], fileset: string, mounts: string[]): Promise<void> {
    const r = await run('python3', [WORKER, String(ROUNDS), ...views], {timeoutMs: 120_000})
    expect(r.code, r.stdout + r.stderr).to.equal(0)
    const out = JSON.parse(r.stdout) as {listed: Array<{a: string[], b: string[]}>, failed: string[]}
    expect(out.failed).to.deep.equal([])
    const names = expectedNames(views.length)
    for (const [i, l] of out.listed.entries()) expect(l, views[i]).to.deep.equal({a: names, b: []})
    // Every process wrote its own byte of the shared file: each view reads all of them.
    const want = Buffer.from('ABC'.slice(0, views.length) + '.'.repeat(8 - views.length))
    for (const v of views) expect(fs.readFileSync(path.join(v, 'shared')), v).to.deep.equal(want)
    for (const mp of mounts) await s.umount(mp)
    const fsck = await cli(['fsck', '-i', s.image])
    expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
    const ls = await cliOk(['ls', '-i', s.image, `${fileset}:/d/a`])
    expect(ls.split('\n').filter(Boolean).sort()).to.deep.equal(names)
  }

  async function prepare(): Promise<void> {
    s = new Scratch()
    await cliOk(['mkdir', '-i', s.image, 'root:/d', 'root:/d/a', 'root:/d/b'])
    const host = path.join(s.dir, 'shared')
    fs.writeFileSync(host, '........')
    await cliOk(['cp', '-i', s.image, host, 'root:/d/shared'])
  }

  it('two mounts of one fileset: every kind of change at once through both, no hang, nothing lost', async () => {
    await prepare()
    const a = s.mountpoint('a')
    const b = s.mountpoint('b')
    await s.mount('root', a)
    await s.mount('root', b)
    await check([path.join(a, 'd'), path.join(b, 'd')], 'root', [a, b])
  })

  it('a fileset mount, the whole-image mount and a FILESET:/path mount: three views of one directory at once', async () => {
    await prepare()
    const one = s.mountpoint('one')
    const all = s.mountpoint('all')
    const sub = s.mountpoint('sub')
    await s.mount('root', one)
    await s.mount(null, all)
    await s.mount('root:/d', sub)
    await check([path.join(one, 'd'), path.join(all, 'root', 'd'), sub], 'root', [one, all, sub])
  })

  it('two mounts of a lazy clone, expanded by the calls as they go', async () => {
    await prepare()
    await cliOk(['clone', '-i', s.image, 'root', 'lz', '--mode', 'lazy'])
    const a = s.mountpoint('a')
    const b = s.mountpoint('b')
    await s.mount('lz', a)
    await s.mount('lz', b)
    await check([path.join(a, 'd'), path.join(b, 'd')], 'lz', [a, b])
    // The source is as it was.
    expect((await cliOk(['ls', '-i', s.image, 'root:/d/a'])).trim()).to.equal('')
  })
})
