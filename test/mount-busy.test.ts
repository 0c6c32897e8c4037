// A fileset a mount shows, or a directory a `FILESET:/path` mount shows (or one above it),
// cannot be removed while mounted: EBUSY, one line, exit 1, nothing removed, as rmdir(2) of a
// mount point and `zfs destroy` of a mounted dataset are refused. Before, `fileset delete`
// of a mounted fileset went through with exit 0, and the mount answered every request with
// "stale file handle" from then on. The whole-image mount shows filesets as its directories
// and follows their deletion, so a fileset only it shows is deleted as asked.
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
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

  it('nor moved, replaced or removed any other way: mv within or out of its fileset, mv or import over it, rmdir and rename through another mount, in slices or lent', async () => {
    // (Only rm was refused: `mv root:/sub root:/sub2` then `rm -r root:/sub2` left the mount
    // answering "stale file handle"; so did a move to another fileset, a move of an empty
    // directory onto the mounted one, and an import whose archive put a file in its place.)
    s = new Scratch()
    const img = ['-i', s.image]
    await cliOk(['mkdir', ...img, '-p', 'root:/a/b/in', 'root:/e/empty', 'root:/spare/empty', 'root:/x'])
    await cliOk(['fileset', 'create', ...img, 'other'])
    const sub = s.mountpoint('sub')
    const bare = s.mountpoint('bare')
    const all = s.mountpoint('all')
    await s.mount('root:/a/b/in', sub)
    await s.mount('root:/e/empty', bare)
    await s.mount(null, all)
    fs.writeFileSync(path.join(sub, 'kept'), 'kept\n')
    const tarDir = fs.mkdtempSync(path.join(s.dir, 'tar-'))
    fs.writeFileSync(path.join(tarDir, 'empty'), 'a file in its place\n')
    const archive = path.join(s.dir, 'repl.tar')
    execFileSync('tar', ['-cf', archive, '-C', tarDir, 'empty'])

    const mounted = (what: string, mp: string) => `prism: ${what} is mounted on ${mp}: unmount it first (prism umount ${mp})\n`
    const refused: Array<[string[], string]> = [
      [['mv', 'root:/a/b/in', 'root:/x/in'], mounted('root:/a/b/in', sub)],
      [['mv', 'root:/a', 'root:/a2'], mounted('root:/a', sub)],
      [['mv', 'root:/a/b', 'root:/x/'], mounted('root:/a/b', sub)],
      [['mv', 'root:/a', 'other:/a'], mounted('root:/a', sub)],
      [['mv', 'root:/a/b/in', 'other:/in'], mounted('root:/a/b/in', sub)],
      [['mv', 'root:/spare/empty', 'root:/e/'], mounted('root:/e/empty', bare)],
      [['rm', '-r', 'root:/e'], mounted('root:/e', bare)],
    ]
    for (const slices of [true, false]) {
      const env = slices ? undefined : {...process.env, PRISM_SERVED_SLICES: '0'} // (lent the image instead)
      for (const [args, msg] of refused) {
        const r = await cli([...args, ...img], {env})
        expect([r.code, r.stderr], `${args.join(' ')}${slices ? '' : ' (lent)'}`).to.deep.equal([1, msg])
      }
    }
    // An import merging a file where the mounted empty directory is: that entry is refused.
    const imp = await cli(['import', ...img, 'root:/e', archive])
    expect(imp.code, imp.stderr).to.equal(1)
    expect(imp.stderr).to.equal(`prism: e/empty: would replace root:/e/empty, which is mounted on ${bare}; not imported\n`)
    // Through another mount of the image: EBUSY, as for a mount point.
    const codeOf = (op: () => void): string => {
      try {
        op()
        return 'ok'
      } catch (e) {
        return (e as NodeJS.ErrnoException).code ?? String(e)
      }
    }
    expect(codeOf(() => fs.rmdirSync(path.join(all, 'root', 'e', 'empty')))).to.equal('EBUSY')
    expect(codeOf(() => fs.rmdirSync(path.join(all, 'root', 'e')))).to.equal('ENOTEMPTY')
    expect(codeOf(() => fs.renameSync(path.join(all, 'root', 'a'), path.join(all, 'root', 'a3')))).to.equal('EBUSY')
    expect(codeOf(() => fs.renameSync(path.join(all, 'root', 'a', 'b'), path.join(all, 'root', 'x', 'b')))).to.equal('EBUSY')
    expect(codeOf(() => fs.renameSync(path.join(all, 'root', 'spare', 'empty'), path.join(all, 'root', 'e', 'empty')))).to.equal('EBUSY')
    // (between filesets the kernel is told EXDEV, and mv(1) would copy and then remove: refused at the removal)
    expect(codeOf(() => fs.renameSync(path.join(all, 'root', 'a', 'b', 'in'), path.join(all, 'other', 'in')))).to.be.oneOf(['EXDEV', 'EBUSY'])
    // Nothing moved: the mounts answer as before, at the paths they were made at.
    expect(fs.readFileSync(path.join(sub, 'kept'), 'utf8')).to.equal('kept\n')
    expect(fs.readdirSync(bare)).to.deep.equal([])
    expect(fs.readFileSync(path.join(all, 'root', 'a', 'b', 'in', 'kept'), 'utf8')).to.equal('kept\n')
    const list = await cli(['mount'])
    expect(list.stdout).to.include('root:/a/b/in').and.include('root:/e/empty')
    // What is not above a mounted directory moves as asked, and so does all of it once unmounted.
    expect((await cli(['mv', 'root:/spare', 'root:/spare2', ...img])).code).to.equal(0)
    await s.umount(sub)
    await s.umount(bare)
    expect((await cli(['mv', 'root:/a', 'other:/a', ...img])).code).to.equal(0)
    expect(fs.readFileSync(path.join(all, 'other', 'a', 'b', 'in', 'kept'), 'utf8')).to.equal('kept\n')
    await s.umount(all)
    const fsck = await cli(['fsck', ...img])
    expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
  })
})
