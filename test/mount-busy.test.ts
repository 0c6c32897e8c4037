// A fileset a mount shows, or a directory a `FILESET:/path` mount shows (or one above it),
// cannot be removed while mounted: EBUSY, one line, exit 1, nothing removed, as rmdir(2) of a
// mount point and `zfs destroy` of a mounted dataset are refused. Before, `fileset delete`
// of a mounted fileset went through with exit 0, and the mount answered every request with
// "stale file handle" from then on. The whole-image mount shows filesets as its directories
// and follows their deletion, so a fileset only it shows is deleted as asked.
import {expect} from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import {cli, cliOk, Scratch, skipWithoutFuse} from './mount-support.js'

describe('prism mount: what a mount shows cannot be removed under it', function () {
  this.timeout(120_000)
  let s: Scratch

  before(function () {
    skipWithoutFuse(this)
  })

  afterEach(async () => {
    await s?.cleanup()
  })

  it('fileset delete and rm -r of a mounted fileset or directory: EBUSY, nothing removed; a fileset only the whole-image mount shows is deleted', async () => {
    s = new Scratch()
    const img = ['-i', s.image]
    await cliOk(['mkdir', ...img, 'root:/srv', 'root:/srv/in', 'root:/other'])
    for (const c of ['c1', 'c2']) await cliOk(['clone', ...img, 'root', c])
    const one = s.mountpoint('one')
    const sub = s.mountpoint('sub')
    const all = s.mountpoint('all')
    await s.mount('c1', one)
    await s.mount('root:/srv/in', sub)
    await s.mount(null, all)
    fs.writeFileSync(path.join(sub, 'kept'), 'kept\n')
    fs.writeFileSync(path.join(one, 'mine'), 'mine\n')

    const refused: Array<[string[], string]> = [
      [['fileset', 'delete', 'c1'], `fileset c1 is mounted on ${one}`],
      [['fileset', 'delete', 'c1', '--force'], `fileset c1 is mounted on ${one}`],
      [['fileset', 'delete', 'root', '--force'], `fileset root is mounted on ${sub}`],
      [['rm', '-r', 'root:/srv/in'], `root:/srv/in is mounted on ${sub}`],
      [['rm', '-r', 'root:/srv'], `root:/srv is mounted on ${sub}`],
      [['rm', '-r', 'root:/srv/in/'], `root:/srv/in/ is mounted on ${sub}`],
      [['rm', '-r', 'c1:/'], `c1:/ is mounted on ${one}`],
    ]
    for (const [args, msg] of refused) {
      const r = await cli([...args, ...img])
      expect([r.code, r.stderr], args.join(' ')).to.deep.equal([1, `prism: ${msg}: unmount it first (prism umount ${msg.split(' ').pop()})\n`])
    }
    // Nothing of them went: the mounts still answer, with what they held.
    expect(fs.readFileSync(path.join(sub, 'kept'), 'utf8')).to.equal('kept\n')
    expect(fs.readFileSync(path.join(one, 'mine'), 'utf8')).to.equal('mine\n')
    expect(fs.readdirSync(all).sort()).to.deep.equal(['c1', 'c2', 'root'])

    // What no mount shows on its own goes as asked.
    expect((await cli(['rm', '-r', 'root:/other', ...img])).code).to.equal(0)
    expect((await cli(['fileset', 'delete', 'c2', ...img])).code).to.equal(0)
    expect(fs.readdirSync(all).sort()).to.deep.equal(['c1', 'root'])

    await s.umount(one)
    await s.umount(sub)
    // Unmounted, it goes.
    expect((await cli(['fileset', 'delete', 'c1', ...img])).code).to.equal(0)
    expect(fs.readdirSync(all).sort()).to.deep.equal(['root'])
    expect(fs.readFileSync(path.join(all, 'root', 'srv', 'in', 'kept'), 'utf8')).to.equal('kept\n')
    await s.umount(all)
    const fsck = await cli(['fsck', ...img])
    expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
  })
})
