// Node identity through a real mount: an inode number the image freed and gave to a new file is
// a new file to the kernel. The server keeps a node for a directory the kernel has forgotten as
// long as another node hangs under it (a hard-linked file last looked up through it); when that
// directory is removed and its number reused, no request may answer with the old node. That was
// the stress test's "mkdir: File exists": the new directory was made, its reply failed with
// ESTALE against the stale node, the kernel retried the mkdir and met the directory it had just
// made. Each way of making a file is tried (mkdir, create, mknod, symlink, and a prism command
// on the served image), and every one must succeed exactly once.
import {expect} from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import {PYTHON} from './fuse-support.js'
import {cli, cliOk, run, Scratch, skipWithoutFuse} from './mount-support.js'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Makes `p`, one way; throws what the call threw. */
type Maker = (p: string, mp: string, image: string) => Promise<void>

const MAKERS: Record<string, Maker> = {
  mkdir: async (p) => fs.mkdirSync(p),
  'create (O_EXCL)': async (p) => fs.closeSync(fs.openSync(p, 'wx')),
  'mknod (FIFO)': async (p) => {
    const r = await run('mkfifo', [p])
    if (r.code !== 0) throw new Error(r.stderr.trim())
  },
  symlink: async (p) => fs.symlinkSync('target', p),
  'prism mkdir, then a lookup through the mount': async (p, mp, image) => {
    await cliOk(['mkdir', `root:/${path.relative(mp, p)}`, '-i', image])
    fs.statSync(p)
  },
}

describe('prism mount: an inode number freed and reused is a new file to the kernel', function () {
  this.timeout(120_000)
  let s: Scratch
  let mp: string

  before(async function () {
    skipWithoutFuse(this)
    if (process.getuid?.() !== 0) {
      console.log('      node identity test skipped: making the kernel forget a directory needs root (drop_caches)')
      this.skip()
    }
    s = new Scratch()
    mp = s.mountpoint()
    await s.mount('root', mp)
  })

  after(async () => {
    await s?.cleanup()
  })

  let round = 0
  for (const [way, make] of Object.entries(MAKERS)) {
    it(`${way}: every new name is made once, whatever number it gets`, async () => {
      const top = path.join(mp, `r${round++}`)
      const a = path.join(top, 'a')
      const b = path.join(top, 'b')
      fs.mkdirSync(top)
      fs.mkdirSync(a)
      fs.mkdirSync(b)
      fs.writeFileSync(path.join(a, 'f'), 'content\n')
      fs.linkSync(path.join(a, 'f'), path.join(b, 'f'))
      fs.statSync(path.join(b, 'f')) // the server's node of f now hangs under b
      const fd = fs.openSync(path.join(a, 'f'), 'r') // the kernel keeps f
      try {
        const freed = fs.statSync(b).ino
        fs.unlinkSync(path.join(b, 'f'))
        fs.rmdirSync(b)
        // The kernel forgets b (its server frees b's inode then); f stays open.
        fs.writeFileSync('/proc/sys/vm/drop_caches', '2')
        await sleep(300)
        const got: number[] = []
        for (let i = 0; i < 40 && !got.includes(freed); i++) {
          const p = path.join(a, `n${i}`)
          await make(p, mp, s.image)
          got.push(fs.lstatSync(p).ino)
        }
        // The test means something only if the number came back.
        expect(got, `inode ${freed} was never reused`).to.include(freed)
        expect(fs.readFileSync(fd, 'utf8')).to.equal('content\n')
      } finally {
        fs.closeSync(fd)
      }
    })
  }

  it('the image is clean afterwards and holds every name made', async () => {
    await s.umount(mp)
    const fsck = await cli(['fsck', '-i', s.image])
    expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
    const ls = await cliOk(['ls', '-i', s.image, 'root:/r0/a'])
    expect(ls).to.match(/\bn0\b/)
  })
})

// A file open through a mount belongs to its fileset. When a prism command on the served image
// makes that fileset's private copy of it (it was shared with a clone) or removes its name
// there, the open file must go on writing to its fileset's own copy: never into the inode the
// clone keeps. The command reports its copies to the server (src/fs/volume.ts lendObserver),
// and keeps an unnamed copy for an open file whose name it removes (Namespace.dropName).
const HOLD = `
import os, sys, time
p, go = sys.argv[1], sys.argv[2]
fd = os.open(p, os.O_RDWR)
print('open', flush=True)
while not os.path.exists(go): time.sleep(0.05)
os.pwrite(fd, b'NEW!', 0)
os.fsync(fd)
print(os.pread(fd, 4, 0).decode(), flush=True)
os.close(fd)
`

describe('prism mount: a file open through a mount stays its fileset\'s when a command copies or removes it', function () {
  this.timeout(120_000)
  let s: Scratch
  let mp: string

  before(async function () {
    skipWithoutFuse(this)
    s = new Scratch()
    mp = s.mountpoint()
    await s.mount('root', mp)
    fs.writeFileSync(path.join(s.dir, 'host.txt'), 'from the host\n')
  })

  after(async () => {
    await s?.cleanup()
  })

  const MODES = ['sync', 'async', 'lazy']
  // Each: the command run on root:/FILE while the mount has FILE open, and what root:/FILE holds after the write through the mount.
  // (an unusable $TMPDIR: the command puts its report beside the server's socket)
  const NO_TMP = {TMPDIR: '/nonexistent/prism-no-tmpdir'}
  // A host tree holding one file named as root:/FILE's, for a cp -r that merges into root:/.
  const treeFor = (f: string, dir: string): string => {
    const t = path.join(dir, `tree-${path.posix.basename(f)}`)
    fs.mkdirSync(t, {recursive: true})
    fs.writeFileSync(path.join(t, path.posix.basename(f)), 'from the host\n')
    return t
  }
  const CASES: Array<{what: string, cmd: (f: string, dir: string) => string[], input?: string, after: 'written' | RegExp | null, unshared?: boolean, env?: NodeJS.ProcessEnv, mode?: string}> = [
    {what: 'chmod', cmd: (f) => ['chmod', '600', f], after: 'written'},
    {what: 'chown', cmd: (f) => ['chown', '1:1', f], after: 'written'},
    {what: 'touch', cmd: (f) => ['touch', f], after: 'written'},
    {what: 'xattr set', cmd: (f) => ['xattr', 'set', f, 'user.k', 'v'], after: 'written'},
    {what: 'truncate', cmd: (f) => ['truncate', '-s', '40', f], after: 'written'},
    {what: 'write', cmd: (f) => ['write', f], input: 'written by a command, long enough\n', after: 'written'},
    {what: 'write with $TMPDIR missing', cmd: (f) => ['write', f], input: 'written by a command, long enough\n', after: 'written', env: NO_TMP},
    {what: 'chmod with $TMPDIR missing', cmd: (f) => ['chmod', '600', f], after: 'written', env: NO_TMP},
    {what: 'rm', cmd: (f) => ['rm', f], after: null},
    {what: 'rm of a file no clone shares', cmd: (f) => ['rm', f], after: null, unshared: true},
    {what: 'cp over it', cmd: (f, dir) => ['cp', path.join(dir, 'host.txt'), f], after: /^from the host\n$/},
    {what: 'mv over it', cmd: (f) => ['mv', f.replace(/\/([^/]+)$/, '/other-$1'), f], after: /^other\n$/},
    // (the copy into a served image runs in the server, src/server/copyin.ts: every clone mode)
    {what: 'cp over it', cmd: (f, dir) => ['cp', path.join(dir, 'host.txt'), f], after: /^from the host\n$/, mode: 'sync'},
    {what: 'cp over it', cmd: (f, dir) => ['cp', path.join(dir, 'host.txt'), f], after: /^from the host\n$/, mode: 'lazy'},
    {what: 'cp over a file no clone shares', cmd: (f, dir) => ['cp', path.join(dir, 'host.txt'), f], after: /^from the host\n$/, unshared: true},
    {what: 'cp -r of a tree merged over its directory', cmd: (f, dir) => ['cp', '-r', treeFor(f, dir), 'root:/'], after: /^from the host\n$/, mode: 'async'},
    {what: 'cp -r of a tree merged over its directory', cmd: (f, dir) => ['cp', '-r', treeFor(f, dir), 'root:/'], after: /^from the host\n$/, mode: 'lazy'},
  ]
  let i = 0
  for (const c of CASES) {
    const mode = c.mode ?? MODES[i % MODES.length]
    const n = i++
    it(`${c.what} (after a ${mode} clone): the write lands in the fileset's own copy, and the clone keeps the original`, async () => {
      const name = c.unshared ? `u${n}` : `f${n}`
      const file = path.join(mp, name)
      fs.writeFileSync(file, 'original content of the file\n')
      fs.writeFileSync(path.join(mp, `other-${name}`), 'other\n')
      const go = path.join(s.dir, `go${n}`)
      const hold = run(PYTHON, ['-c', HOLD, file, go], {timeoutMs: 60_000})
      // wait until the file is open
      for (let t = 0; t < 100 && !(await cli(['ls', '-i', s.image, 'root:/'])).stdout.includes(name); t++) await sleep(50)
      await sleep(300)
      // (a file made after the clone is the fileset's alone: removed, it is an orphan the mount holds)
      if (c.unshared) fs.renameSync(file, path.join(mp, 'tmp-' + name))
      await cliOk(['clone', '-i', s.image, 'root', `c${n}`, '--mode', mode])
      if (c.unshared) fs.renameSync(path.join(mp, 'tmp-' + name), file)
      const r = await cli([...c.cmd(`root:/${name}`, s.dir), '-i', s.image], {input: c.input, env: c.env})
      expect(r.code, r.stderr).to.equal(0)
      fs.writeFileSync(go, '')
      const h = await hold
      expect(h.code, h.stderr).to.equal(0)
      expect(h.stdout.split('\n')[1]).to.equal('NEW!')
      if (!c.unshared) expect((await cli(['cat', '-i', s.image, `c${n}:/${name}`])).stdout).to.equal('original content of the file\n')
      const now = await cli(['cat', '-i', s.image, `root:/${name}`])
      if (c.after === null) expect(now.code).to.not.equal(0)
      else if (c.after === 'written') expect(now.stdout.slice(0, 4)).to.equal('NEW!')
      else expect(now.stdout).to.match(c.after)
    })
  }

  it('the image is clean after the unmount, and every clone still holds the original', async () => {
    await s.umount(mp)
    const fsck = await cli(['fsck', '-i', s.image])
    expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
    for (let n = 0; n < CASES.length; n++) {
      if (CASES[n].unshared) continue
      expect((await cli(['cat', '-i', s.image, `c${n}:/f${n}`])).stdout, `c${n}`).to.equal('original content of the file\n')
    }
  })
})
