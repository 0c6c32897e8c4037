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
