// Calls that fail through a mount of a full image change nothing. A mount's calls share one
// running transaction until the next commit; each runs inside a savepoint of it, rolled back
// when the call fails (Volume.savepoint), so that a call that ran out of blocks or inodes part
// way leaves nothing of itself to be committed with the others. test/mount-full.py fills the
// image through the mount, then tries, through a mount of a fileset and of a lazy clone of it
// (read whole first; another lazy clone, never read, keeps the fileset's writes guarded),
// calls that need room: mkdir and create in a directory with a default ACL (an attribute set
// to write), a write into an empty file, a long symlink, a FIFO, large extended attributes, an append to and
// an overwrite of a file the clone shares, fallocate, link, rename. After each that fails,
// every view must show exactly what it showed before (and the free counts). Once unmounted,
// fsck must be clean, and a new mount must show what the old ones showed last.
// (test/request-atomic.test.ts drives the same class in-process with random requests.)
import {expect} from 'chai'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {cli, cliOk, run, Scratch, skipWithoutFuse} from './mount-support.js'

const WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'mount-full.py')

describe('prism mount: a call that fails on a full image changes nothing', function () {
  this.timeout(240_000)
  let s: Scratch

  before(function () {
    skipWithoutFuse(this)
  })

  afterEach(async () => {
    await s?.cleanup()
  })

  for (const [what, opts] of [['out of blocks', {size: 24 * 1024 * 1024}], ['out of inodes', {size: 64 * 1024 * 1024, inodeCount: 256}]] as Array<[string, {size: number, inodeCount?: number}]>) {
    it(`${what}: every failed call through a fileset and a lazy clone leaves every view and the image as they were`, async () => {
      s = new Scratch(opts)
      const m = s.mountpoint('setup')
      await s.mount('root', m)
      const setup = await run('bash', ['-c', `set -e; cd ${m}; mkdir d d/sub untouched; touch d/sub/empty untouched/f; setfacl -d -m u::rwx,g::r-x,o::r-x d; head -c 5000 /dev/urandom > d/shared; ln d/shared d/shared2; setfattr -n user.a -v 1 d/shared`])
      expect(setup.code, setup.stderr).to.equal(0)
      await s.umount(m)
      await cliOk(['clone', '-i', s.image, 'root', 'lz', '--mode', 'lazy'])
      // A second lazy clone, never read (its /untouched is never expanded), keeps the source's
      // writes guarded all along; the mounted one is read whole first, so that the server ends
      // its expansion (freeing its clone-state file) before the calls, not between a call and
      // the check of what it changed.
      await cliOk(['clone', '-i', s.image, 'root', 'lz2', '--mode', 'lazy'])
      await cliOk(['fileset', 'create', '-i', s.image, 'fill'])
      const a = s.mountpoint('a')
      const b = s.mountpoint('b')
      const c = s.mountpoint('c')
      await s.mount('root', a)
      await s.mount('lz', b)
      await s.mount('fill', c) // (the files that fill the image, out of the views walked after each call)
      expect((await run('find', [b])).code).to.equal(0)
      const stateOf = async (name: string) => (JSON.parse(await cliOk(['fileset', 'list', '-i', s.image, '--json', '--no-space'])) as Array<{name: string, state: string}>).find((f) => f.name === name)!.state
      for (let t = 0; t < 100 && await stateOf('lz') !== 'active'; t++) await new Promise((r) => setTimeout(r, 100))
      expect(await stateOf('lz')).to.equal('active')
      expect(await stateOf('lz2')).to.equal('expanding')
      const r = await run('python3', [WORKER, c, a, b], {timeoutMs: 180_000})
      expect(r.code, r.stdout + r.stderr).to.equal(0)
      const out = JSON.parse(r.stdout) as {tried: string[], failed: string[], leftovers: unknown[], final: Record<string, unknown>}
      expect(out.leftovers, JSON.stringify(out.leftovers, null, 1)).to.deep.equal([])
      expect(out.failed.length, `calls that failed of ${out.tried.length}: ${out.failed.join('; ')}`).to.be.greaterThan(out.tried.length / 3)
      for (const mp of [a, b, c]) await s.umount(mp)
      const fsck = await cli(['fsck', '-i', s.image])
      expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
      // A new server shows what the old mounts showed last: nothing was lost or left uncommitted.
      await s.mount('root', a)
      await s.mount('lz', b)
      const again = await run('python3', [WORKER, '--state', a, b], {timeoutMs: 60_000})
      expect(again.code, again.stderr).to.equal(0)
      const now = JSON.parse(again.stdout) as Record<string, unknown>
      expect(now[a]).to.deep.equal(out.final[a])
      expect(now[b]).to.deep.equal(out.final[b])
    })
  }
})
