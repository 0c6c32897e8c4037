// open(2) with O_TMPFILE through a real mount. The kernel sends FUSE_TMPFILE, which libfuse
// 3.14 does not know; the addon hands it over as a create of "/" (native/fuse/prism_fuse.c) and
// the server makes a regular file named by no directory (Namespace.createUnnamed): readable and
// writable, named by a link through /proc/self/fd unless it was opened with O_EXCL, and gone
// with its space at its last close, or at the next writable open after a crash. Tried in a
// fileset, in a lazy clone's directory not yet expanded (the source keeps its tree), at the top
// of a whole-image mount (no file can be made there), on a read-only mount, and with the
// server killed while such a file is open. The steps run in a child process
// (test/mount-tmpfile.py): the test process never touches a mount itself.
import {expect} from 'chai'
import {spawn} from 'node:child_process'
import fsp from 'node:fs/promises'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {PYTHON} from './fuse-support.js'
import {cli, cliOk, expectClean, run, Scratch, serverPid, skipWithoutFuse, waitExit} from './mount-support.js'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const STEPS = path.join(HERE, 'mount-tmpfile.py')

type Step = Record<string, unknown>

/** The steps (see mount-tmpfile.py) in directory `dir`, one result each. */
async function steps(dir: string, ...args: string[]): Promise<Step[]> {
  const r = await run(PYTHON, [STEPS, dir, ...args], {timeoutMs: 30_000})
  if (r.code !== 0) throw new Error(`mount-tmpfile.py ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`)
  return r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Step)
}

/** Free blocks and inodes of the image (prism df --json). */
async function df(image: string): Promise<unknown> {
  const r = JSON.parse(await cliOk(['df', '-i', image, '--json'])) as Record<string, unknown>
  delete r.image
  return r
}

/** prism write IMAGE FILESET:/PATH, the content on standard input. */
async function write(image: string, target: string, content: string): Promise<void> {
  const r = await cli(['write', '-i', image, target], {input: content})
  expect(r.code, r.stderr).to.equal(0)
}

describe('prism mount: open with O_TMPFILE', function () {
  this.timeout(120_000)
  let s: Scratch

  before(function () {
    skipWithoutFuse(this)
  })

  beforeEach(() => {
    s = new Scratch()
  })

  afterEach(async () => {
    await s?.cleanup()
  })

  it('in a fileset: written and read unnamed, named by a link, never by one with O_EXCL; an unnamed one goes with its space at its close', async () => {
    const mp = s.mountpoint()
    await s.mount('root', mp)
    const dir = path.join(mp, 'dir')
    await fsp.mkdir(dir)
    const before = await df(s.image)
    const big = '300000*x'
    const [linked, excl, dropped, python] = await steps(dir, 'link', 'named', 'hello tmpfile', 'excl', big, 'drop', big, 'python')
    expect(linked).to.deep.equal({op: 'link', nlinkBefore: 0, nlinkAfter: 1, listedBefore: [], read: 'hello tmpfile'})
    expect(excl).to.deep.equal({op: 'excl', link: 'ENOENT', exists: false})
    expect(dropped).to.deep.equal({op: 'drop', size: 300_000, nlink: 0})
    expect(python).to.deep.equal({op: 'python', read: 'python tempfile', nlink: 0, listed: ['named']})
    await s.umount(mp)
    // The named file stays, with its content; nothing of the others does.
    expect(await cliOk(['cat', '-i', s.image, 'root:/dir/named'])).to.equal('hello tmpfile')
    expect((await cliOk(['ls', '-i', s.image, 'root:/dir'])).trim().split('\n')).to.deep.equal(['named'])
    await expectClean(s.image)
    await cliOk(['rm', '-i', s.image, 'root:/dir/named'])
    expect(await df(s.image)).to.deep.equal(before)
    await expectClean(s.image)
  })

  it('made as a create makes a file: the umask, the owner, a setgid directory\'s group', async () => {
    const mp = s.mountpoint()
    await s.mount('root', mp)
    const sg = path.join(mp, 'sg')
    await fsp.mkdir(sg)
    await fsp.chown(sg, 0, 4321)
    await fsp.chmod(sg, 0o2775)
    const [plain] = await steps(mp, 'mode', '666')
    const [inSg] = await steps(sg, 'mode', '640')
    expect(plain).to.deep.equal({op: 'mode', mode: '0o100644', gid: 0, uid: 0})
    expect(inSg).to.deep.equal({op: 'mode', mode: '0o100640', gid: 4321, uid: 0})
  })

  it('in a lazy clone\'s directory not yet expanded: named in the clone only, the source as it was; at the top of a whole-image mount: EPERM', async () => {
    const mp = s.mountpoint()
    await s.mount(null, mp)
    await fsp.mkdir(path.join(mp, 'src'))
    await fsp.mkdir(path.join(mp, 'src', 'd'))
    await fsp.writeFile(path.join(mp, 'src', 'd', 'f'), 'from the source')
    await cliOk(['clone', '-i', s.image, 'src', 'lz', '--mode', 'lazy'])
    const [linked] = await steps(path.join(mp, 'lz', 'd'), 'link', 'new', 'made in the clone')
    expect(linked).to.deep.equal({op: 'link', nlinkBefore: 0, nlinkAfter: 1, listedBefore: ['f'], read: 'made in the clone'})
    const [top] = await steps(mp, 'drop', 'x')
    expect(top).to.deep.equal({op: 'drop', error: 'EPERM'})
    await s.umount(mp)
    expect((await cliOk(['ls', '-i', s.image, 'lz:/d'])).trim().split('\n')).to.deep.equal(['f', 'new'])
    expect((await cliOk(['ls', '-i', s.image, 'src:/d'])).trim().split('\n')).to.deep.equal(['f'])
    expect(await cliOk(['cat', '-i', s.image, 'lz:/d/new'])).to.equal('made in the clone')
    expect(await cliOk(['cat', '-i', s.image, 'lz:/d/f'])).to.equal('from the source')
    await expectClean(s.image)
  })

  it('on a read-only mount: EROFS, the image unchanged', async () => {
    const mp = s.mountpoint()
    await write(s.image, 'root:/f', 'kept')
    const before = await df(s.image)
    await s.mount('root', mp, ['ro'])
    const [r] = await steps(mp, 'drop', 'x')
    expect(r).to.deep.equal({op: 'drop', error: 'EROFS'})
    await s.umount(mp)
    expect(await df(s.image)).to.deep.equal(before)
    expect(await cliOk(['cat', '-i', s.image, 'root:/f'])).to.equal('kept')
  })

  it('the server killed (SIGKILL) while an unnamed file is open: fsck accepts the image, the next writable open frees the file, nothing else is lost', async () => {
    const mp = s.mountpoint()
    await s.mount('root', mp)
    const [kept] = await steps(mp, 'link', 'kept', 'named before the kill')
    expect(kept).to.include({nlinkAfter: 1})
    const before = await df(s.image)
    const pid = (await serverPid(s.image))!
    const holder = spawn(PYTHON, [STEPS, mp, 'hold', '2000000*y'], {stdio: ['pipe', 'pipe', 'pipe']})
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let out = ''
        holder.stdout.on('data', (b: Buffer) => {
          out += b.toString()
          if (out.includes('\n')) resolve(out)
        })
        holder.on('exit', (code) => reject(new Error(`the holder exited (${code}) before it held the file`)))
        setTimeout(() => reject(new Error('the holder did not hold the file within 20 s')), 20_000)
      })
      expect(JSON.parse(line)).to.deep.equal({op: 'hold', held: true})
      // Its 2 MB are written and committed (fsync), named by nothing.
      expect(await df(s.image)).to.not.deep.equal(before)
      process.kill(pid, 'SIGKILL')
      expect(await waitExit(pid)).to.equal(true)
    } finally {
      holder.stdin.end()
      await new Promise((r) => holder.exitCode === null ? holder.on('exit', r) : r(null))
    }
    await cliOk(['umount', mp])
    await expectClean(s.image)
    // A writable open (this write) frees it; the write's own space comes back with its rm.
    await write(s.image, 'root:/after', 'z')
    await cliOk(['rm', '-i', s.image, 'root:/after'])
    expect(await df(s.image)).to.deep.equal(before)
    expect(await cliOk(['cat', '-i', s.image, 'root:/kept'])).to.equal('named before the kill')
    await expectClean(s.image)
  })
})
