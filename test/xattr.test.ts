// Extended attributes and special files in the library (docs/FORMAT.md §5.5, §14), on real
// image files: every namespace, the limits Linux has, inline and block-backed sets, sharing
// with clones and copy-on-write that copies only what changed, identical sets shared, space
// given back, fsck clean throughout, and the feature bits.
import fs from 'node:fs'
import {createHash} from 'node:crypto'
import zlib from 'node:zlib'
import path from 'node:path'
import {expect} from 'chai'
import {crc32} from '../src/format/checksum.js'
import fc from 'fast-check'
import {clone} from '../src/clone/clone.js'
import {IF_INLINE, IF_XATTR} from '../src/format/constants.js'
import {INCOMPAT_SPECIAL, INCOMPAT_XATTR} from '../src/format/superblock.js'
import {ACL_GROUP, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER, ACL_USER, ACL_USER_OBJ, encodeAcl} from '../src/format/xattr.js'
import {PrismError} from '../src/errors.js'
import {deleteFileset, namespace, withImage} from '../src/fs/image.js'
import {getFileset, listFilesets} from '../src/fs/filesets.js'
import {allFilesetSpace, filesetSpace} from '../src/fs/space.js'
import {Volume} from '../src/fs/volume.js'
import {fsckDevice, fsckImage} from '../src/fsck/index.js'
import {edit, errorCode as code, newImage, read, ROOT, sha256File, tmpDir} from './helpers.js'
import {memImage} from './fsops.js'

const B = (s: string) => Buffer.from(s)


function fsckClean(img: string): void {
  const r = fsckImage(img, {repair: false})
  expect(r.problems, JSON.stringify(r.problems)).to.deep.equal([])
  expect(r.exitCode).to.equal(0)
}

describe('extended attributes', function () {
  this.timeout(120000)
  let dir: string
  let img: string
  beforeEach(() => {
    dir = tmpDir()
    img = newImage(dir)
  })

  it('stores every namespace Linux has, on every kind of inode, and lists them sorted', () => {
    const acl = encodeAcl([{tag: ACL_USER_OBJ, perm: 7}, {tag: ACL_USER, perm: 5, id: 1000}, {tag: ACL_GROUP_OBJ, perm: 5}, {tag: ACL_MASK, perm: 5}, {tag: ACL_OTHER, perm: 0}])
    const attrs: Array<[string, Buffer]> = [
      ['user.mime_type', B('text/plain')], ['trusted.overlay.opaque', B('y')], ['security.selinux', B('system_u:object_r:etc_t:s0\0')],
      ['security.capability', Buffer.from('0100000200200000000000000000000000000000', 'hex')], ['system.posix_acl_access', acl],
    ]
    edit(img, (ns) => {
      ns.writeFile('/f', B('data'))
      ns.mkdir('/d')
      ns.symlink('/f', '/l')
      ns.mknod('/p', 0o010644)
      for (const p of ['/f', '/d']) for (const [n, v] of attrs) ns.setXattr(p, B(n), v)
      // user.* only on files and directories, as Linux; every other namespace on a FIFO too.
      for (const [n, v] of attrs) if (!n.startsWith('user.')) ns.setXattr('/p', B(n), v)
      expect(code(() => ns.setXattr('/p', B('user.x'), B('1')))).to.equal('EPERM')
      expect(code(() => ns.setXattr('/l', B('user.x'), B('1')))).to.equal('EPERM')
      ns.setXattr('/l', B('security.selinux'), B('lnk'))
      ns.setXattr('/d', B('system.posix_acl_default'), acl)
    })
    read(img, (ns) => {
      expect(ns.listXattrs('/f').map((x) => x.name.toString())).to.deep.equal(attrs.map(([n]) => n).sort())
      for (const [n, v] of attrs) expect(ns.getXattr('/f', B(n))).to.deep.equal(v)
      expect(ns.listXattrs('/p').map((x) => x.name.toString())).to.deep.equal(attrs.map(([n]) => n).filter((n) => !n.startsWith('user.')).sort())
      expect(ns.getXattr('/d', B('system.posix_acl_default'))).to.deep.equal(acl)
      expect(ns.listXattrs('/l').map((x) => x.name.toString())).to.deep.equal(['security.selinux'])
      // A symlink's own attributes unless asked to follow it.
      expect(ns.listXattrs('/l', true).length).to.equal(attrs.length)
      expect(ns.getXattr('/l', B('user.mime_type'), true)).to.deep.equal(attrs[0][1])
      expect(ns.getXattr('/f', B('user.none'))).to.equal(null)
    })
    fsckClean(img)
  })

  it('refuses what Linux refuses, with its error, and changes nothing', () => {
    edit(img, (ns) => ns.writeFile('/f', B('x')))
    const before = read(img, (ns) => ns.stat('/f'))
    edit(img, (ns) => {
      expect(code(() => ns.setXattr('/f', B('bogus.name'), B('1')))).to.equal('ENOTSUP')
      expect(code(() => ns.setXattr('/f', B('user.'), B('1')))).to.equal('EINVAL')
      expect(code(() => ns.setXattr('/f', B('user.' + 'n'.repeat(251)), B('1')))).to.equal('ENAMETOOLONG')
      expect(code(() => ns.setXattr('/f', B('user.big'), Buffer.alloc(65537)))).to.equal('E2BIG')
      expect(code(() => ns.setXattr('/f', B('user.a'), B('1'), {replace: true}))).to.equal('ENODATA')
      expect(code(() => ns.removeXattr('/f', B('user.a')))).to.equal('ENODATA')
      expect(code(() => ns.setXattr('/f', B('system.posix_acl_access'), Buffer.from([2, 0, 0, 0, 9, 9, 9, 9, 0, 0, 0, 0])))).to.equal('EINVAL')
      expect(code(() => ns.setXattr('/f', B('system.posix_acl_default'), encodeAcl([{tag: ACL_USER_OBJ, perm: 7}, {tag: ACL_GROUP_OBJ, perm: 5}, {tag: ACL_OTHER, perm: 5}])))).to.equal('EACCES')
      ns.setXattr('/f', B('user.a'), B('1'))
      expect(code(() => ns.setXattr('/f', B('user.a'), B('2'), {create: true}))).to.equal('EEXIST')
      ns.setXattr('/f', B('user.a'), B('3'), {replace: true})
    })
    read(img, (ns) => {
      expect(ns.getXattr('/f', B('user.a'))).to.deep.equal(B('3'))
      expect(ns.stat('/f').size).to.equal(before.size)
    })
    fsckClean(img)
  })

  it('holds 64 KiB values and well over 64 KiB per inode, up to the set limit, inline when small', () => {
    const big = (i: number) => Buffer.alloc(65536, i)
    edit(img, (ns, vol) => {
      ns.writeFile('/small', B('x'))
      ns.setXattr('/small', B('security.selinux'), B('system_u:object_r:bin_t:s0'))
      const a = vol.iget(vol.iget(ns.resolve('/small').ino).r.xattrIno)
      expect(a.r.flags & (IF_XATTR | IF_INLINE)).to.equal(IF_XATTR | IF_INLINE)
      expect(a.r.blocks).to.equal(0)
      ns.writeFile('/big', B('y'))
      for (let i = 0; i < 12; i++) ns.setXattr('/big', B(`user.v${i}`), big(i))
    })
    read(img, (ns, vol) => {
      for (let i = 0; i < 12; i++) expect(ns.getXattr('/big', B(`user.v${i}`))!.equals(big(i))).to.equal(true)
      const a = vol.iget(vol.iget(ns.resolve('/big').ino).r.xattrIno)
      expect(a.r.size).to.be.greaterThan(12 * 65536)
      expect(a.r.blocks).to.be.at.least(Math.ceil(a.r.size / 4096))
    })
    // Past the set limit (1 MiB): refused, and the set stays as it was.
    edit(img, (ns) => {
      let last = 'ok'
      for (let i = 12; i < 20 && last === 'ok'; i++) last = code(() => ns.setXattr('/big', B(`user.v${i}`), big(i)))
      expect(last).to.equal('E2BIG')
    })
    read(img, (ns) => expect(ns.listXattrs('/big').length).to.equal(15))
    fsckClean(img)
  })

  it('a clone shares the attribute inode; a change on one side leaves the other side as it was and copies only the blocks that changed', () => {
    edit(img, (ns) => {
      ns.writeFile('/f', B('shared file'))
      for (let i = 0; i < 8; i++) ns.setXattr('/f', B(`user.v${i}`), Buffer.alloc(60000, i))
      ns.mkdir('/d')
      ns.setXattr('/d', B('user.dir'), B('on the directory'))
    })
    let freeBefore = 0
    let attrIno = 0
    withImage(img, {write: true}, (vol) => {
      clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'}, {mode: 'sync'})
      const f = namespace(vol, 'root').resolve('/f')
      attrIno = f.r.xattrIno
      expect(vol.iget(attrIno).r.share).to.equal(1) // one inode (shared by both filesets) names it
      const d = namespace(vol, 'c').resolve('/d')
      expect(d.r.xattrIno).to.equal(namespace(vol, 'root').resolve('/d').r.xattrIno)
      expect(vol.iget(d.r.xattrIno).r.share).to.equal(2) // the clone's directory takes a reference
      vol.commit()
      freeBefore = vol.sb.freeBlocks
      namespace(vol, 'c').setXattr('/f', B('user.v7'), Buffer.alloc(60000, 99))
      vol.commit()
      // The clone's file was copied (inode copy-on-write), and its attribute set too; only
      // the blocks holding user.v7 (the last ~15 of ~118) were written anew.
      const used = freeBefore - vol.sb.freeBlocks
      expect(used).to.be.within(14, 20)
    })
    read(img, (ns) => {
      expect(ns.getXattr('/f', B('user.v7'))!.equals(Buffer.alloc(60000, 7))).to.equal(true)
      expect(ns.getXattr('/d', B('user.dir'))).to.deep.equal(B('on the directory'))
    })
    read(img, (ns) => {
      expect(ns.getXattr('/f', B('user.v7'))!.equals(Buffer.alloc(60000, 99))).to.equal(true)
      for (let i = 0; i < 7; i++) expect(ns.getXattr('/f', B(`user.v${i}`))!.equals(Buffer.alloc(60000, i))).to.equal(true)
    }, 'c')
    fsckClean(img)
    // Changing the directory's attribute in the clone leaves root's alone.
    edit(img, (ns) => ns.removeXattr('/d', B('user.dir')), 'c')
    read(img, (ns) => expect(ns.getXattr('/d', B('user.dir'))).to.deep.equal(B('on the directory')))
    fsckClean(img)
  })

  it('fileset space counts attribute sets: a fileset\'s own until a clone shares them, the same in the one-pass walk of every fileset', () => {
    withImage(img, {write: true}, (vol) => {
      const ns = namespace(vol, 'root')
      ns.writeFile('/f', B('x'))
      ns.mkdir('/d')
      vol.commit()
      const root = () => getFileset(vol, 'root')
      const before = filesetSpace(vol, root())
      ns.setXattr('/f', B('user.big'), Buffer.alloc(40000, 5))
      ns.setXattr('/d', B('user.big'), Buffer.alloc(40000, 6))
      vol.commit()
      const setBlocks = (p: string) => vol.iget(ns.resolve(p).r.xattrIno).r.blocks
      const attrs = setBlocks('/f') + setBlocks('/d')
      expect(attrs).to.be.at.least(20) // both sets in blocks
      const mid = filesetSpace(vol, root())
      expect(mid.referencedBlocks - before.referencedBlocks).to.equal(attrs)
      expect(mid.uniqueBlocks - before.uniqueBlocks).to.equal(attrs)
      clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'}, {mode: 'sync'})
      vol.commit()
      // /f is one inode both filesets hold; /d's set is named by both filesets' directories:
      // deleting either fileset frees neither set.
      const all = allFilesetSpace(vol, listFilesets(vol))
      const r = all.get(root().id)!
      const c = all.get(getFileset(vol, 'c').id)!
      expect(r).to.deep.equal(filesetSpace(vol, root()))
      expect(c).to.deep.equal(filesetSpace(vol, getFileset(vol, 'c')))
      expect(r.referencedBlocks).to.equal(mid.referencedBlocks)
      expect(r.uniqueBlocks).to.equal(mid.uniqueBlocks - attrs)
      expect(c.referencedBlocks).to.equal(r.referencedBlocks)
      // A change in the clone gives it a set of its own, counted as its own.
      namespace(vol, 'c').setXattr('/d', B('user.big'), Buffer.alloc(40000, 7))
      vol.commit()
      const c2 = filesetSpace(vol, getFileset(vol, 'c'))
      expect(c2.uniqueBlocks - c.uniqueBlocks).to.equal(setBlocks('/d'))
      expect(filesetSpace(vol, root()).uniqueBlocks).to.equal(r.uniqueBlocks + setBlocks('/d'))
    })
    fsckClean(img)
  })

  it('identical sets written in one session share one attribute inode, and everything comes back when the files go', () => {
    let free0 = {blocks: 0, inodes: 0}
    withImage(img, {write: false}, (vol) => { free0 = {blocks: vol.sb.freeBlocks, inodes: vol.sb.freeInodes} })
    edit(img, (ns, vol) => {
      ns.mkdir('/d')
      for (let i = 0; i < 50; i++) {
        ns.writeFile(`/d/f${i}`, B(String(i)))
        ns.setXattr(`/d/f${i}`, B('security.selinux'), B('system_u:object_r:usr_t:s0'))
      }
      const inos = new Set<number>()
      for (let i = 0; i < 50; i++) inos.add(ns.resolve(`/d/f${i}`).r.xattrIno)
      expect(inos.size).to.equal(1)
      expect(vol.iget([...inos][0]).r.share).to.equal(50)
    })
    fsckClean(img)
    edit(img, (ns) => ns.remove('/d', {recursive: true}))
    withImage(img, {write: false}, (vol) => expect({blocks: vol.sb.freeBlocks, inodes: vol.sb.freeInodes}).to.deep.equal(free0))
    fsckClean(img)
  })

  it('sets the feature bit on first use only, and an image with an unknown bit is refused', () => {
    withImage(img, {write: false}, (vol) => expect(vol.sb.incompat & (INCOMPAT_XATTR | INCOMPAT_SPECIAL)).to.equal(0))
    edit(img, (ns) => ns.writeFile('/f', B('x')))
    withImage(img, {write: false}, (vol) => expect(vol.sb.incompat & INCOMPAT_XATTR).to.equal(0))
    edit(img, (ns) => ns.setXattr('/f', B('user.a'), B('1')))
    withImage(img, {write: false}, (vol) => expect(vol.sb.incompat & (INCOMPAT_XATTR | INCOMPAT_SPECIAL)).to.equal(INCOMPAT_XATTR))
    edit(img, (ns) => { ns.mknod('/null', 0o020666, {major: 1, minor: 3}) })
    withImage(img, {write: false}, (vol) => expect(vol.sb.incompat & (INCOMPAT_XATTR | INCOMPAT_SPECIAL)).to.equal(INCOMPAT_XATTR | INCOMPAT_SPECIAL))
    fsckClean(img)
    // A feature this build does not know (as an older build sees these): refused, both copies.
    const fd = fs.openSync(img, 'r+')
    try {
      for (const at of [0, fs.fstatSync(fd).size - 4096]) {
        const sb = Buffer.alloc(4096)
        fs.readSync(fd, sb, 0, 4096, at)
        sb.writeUInt32LE(sb.readUInt32LE(0x0c) | 0x8000, 0x0c)
        sb.writeUInt32LE(crc32(sb, 0, 0xfc), 0xfc)
        fs.writeSync(fd, sb, 0, 4096, at)
      }
    } finally {
      fs.closeSync(fd)
    }
    expect(() => withImage(img, {write: false}, () => {})).to.throw(PrismError, /features this prism does not know/)
  })
})

describe('special files', function () {
  this.timeout(120000)

  it('devices, FIFOs and sockets keep type, device number, mode and owner; clones share them; rm frees them', () => {
    const dir = tmpDir()
    const img = newImage(dir)
    edit(img, (ns) => {
      ns.mkdir('/dev')
      ns.mknod('/dev/null', 0o020666, {major: 1, minor: 3})
      ns.mknod('/dev/sda', 0o060660, {major: 8, minor: 0}, {uid: 0, gid: 6})
      ns.mknod('/dev/big', 0o020600, {major: 0xffffffff, minor: 0x7fffffff})
      ns.mknod('/run.fifo', 0o010600)
      ns.mknod('/sock', 0o140755)
      expect(code(() => ns.mknod('/dev/null', 0o020666, {major: 1, minor: 3}))).to.equal('EEXIST')
      expect(code(() => ns.mknod('/reg', 0o100644))).to.equal('EINVAL')
      expect(code(() => ns.writeFile('/run.fifo', B('x')))).to.equal('EINVAL')
      expect(code(() => ns.truncate('/dev/null', 10))).to.equal('EINVAL')
    })
    const expectTree = (f: string) => read(img, (ns) => {
      const s = (p: string) => { const st = ns.stat(p); return [st.type, st.perm.toString(8), st.rdev?.major, st.rdev?.minor, st.size, st.blocks, st.gid] }
      expect(s('/dev/null')).to.deep.equal(['chardev', '666', 1, 3, 0, 0, 0])
      expect(s('/dev/sda')).to.deep.equal(['blockdev', '660', 8, 0, 0, 0, 6])
      expect(s('/dev/big')).to.deep.equal(['chardev', '600', 0xffffffff, 0x7fffffff, 0, 0, 0])
      expect(s('/run.fifo')).to.deep.equal(['fifo', '600', 0, 0, 0, 0, 0])
      expect(s('/sock')).to.deep.equal(['socket', '755', 0, 0, 0, 0, 0])
      expect(ns.readdir('/dev').map((e) => `${e.name}:${e.type}`)).to.deep.equal(['big:chardev', 'null:chardev', 'sda:blockdev'])
      expect(ns.readFile('/dev/null').length).to.equal(0)
    }, f)
    expectTree('root')
    withImage(img, {write: true}, (vol) => {
      clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'}, {mode: 'sync'})
      expect(vol.iget(namespace(vol, 'c').resolve('/dev/null').ino).r.share).to.equal(2)
    })
    expectTree('c')
    edit(img, (ns) => { ns.chmod('/dev/null', 0o600); ns.link('/dev/null', '/null2'); ns.rename('/sock', '/sock2') }, 'c')
    read(img, (ns) => {
      expect(ns.stat('/dev/null').perm).to.equal(0o600)
      expect(ns.stat('/null2').rdev).to.deep.equal({major: 1, minor: 3})
      expect(ns.stat('/null2').nlink).to.equal(2)
    }, 'c')
    expectTree('root')
    fsckClean(img)
    withImage(img, {write: true}, (vol) => { deleteFileset(vol, 'c') })
    edit(img, (ns) => ns.remove('/dev', {recursive: true}))
    read(img, (ns) => expect(ns.readdir('/').map((e) => e.name)).to.deep.equal(['run.fifo', 'sock']))
    fsckClean(img)
  })
})

describe('model: attributes across clones', function () {
  this.timeout(600000)
  const runs = Number(process.env.PRISM_XATTR_RUNS ?? 150)
  type XStep =
    | {k: 'set', fs: number, file: number, name: number, size: number, fill: number}
    | {k: 'rm', fs: number, file: number, name: number}
    | {k: 'clone', fs: number}
    | {k: 'delete', fs: number}
    | {k: 'write', fs: number, file: number}
  const stepArb: fc.Arbitrary<XStep> = fc.oneof(
    {weight: 6, arbitrary: fc.record({k: fc.constant('set' as const), fs: fc.nat(5), file: fc.nat(3), name: fc.nat(4), size: fc.oneof(fc.nat(40), fc.integer({min: 100, max: 65536})), fill: fc.nat(255)})},
    {weight: 2, arbitrary: fc.record({k: fc.constant('rm' as const), fs: fc.nat(5), file: fc.nat(3), name: fc.nat(4)})},
    {weight: 2, arbitrary: fc.record({k: fc.constant('clone' as const), fs: fc.nat(5)})},
    {weight: 1, arbitrary: fc.record({k: fc.constant('delete' as const), fs: fc.nat(5)})},
    {weight: 1, arbitrary: fc.record({k: fc.constant('write' as const), fs: fc.nat(5), file: fc.nat(3)})},
  )
  const files = ['/a', '/d', '/d/b', '/n']

  it(`matches a model of per-fileset attributes over ${runs} random sequences; fsck clean; all space back at the end`, () => {
    fc.assert(fc.property(fc.array(stepArb, {minLength: 5, maxLength: 25}), (steps) => {
      const dev = memImage(6144)
      let vol = Volume.openDevice(dev, {write: true})
      const free0 = [vol.sb.freeBlocks, vol.sb.freeInodes]
      type M = Map<string, Map<string, string>>
      const models = new Map<string, M>()
      const ns0 = namespace(vol, 'root')
      ns0.writeFile('/a', B('a'))
      ns0.mkdir('/d')
      ns0.writeFile('/d/b', B('b'))
      ns0.link('/d/b', '/n') // hard-linked: never shared, copied per clone
      vol.commit()
      models.set('root', new Map(files.map((f) => [f, new Map()])))
      const free1 = [vol.sb.freeBlocks, vol.sb.freeInodes]
      let next = 1
      try {
        for (const s of steps) {
          const names = [...models.keys()]
          const name = names[s.fs % names.length]
          const ns = namespace(vol, name)
          const m = models.get(name)!
          if (s.k === 'set') {
            const f = files[s.file]
            const v = Buffer.alloc(s.size, s.fill)
            ns.setXattr(f, B(`user.x${s.name}`), v)
            // /d/b and /n are one inode
            for (const g of f === '/n' || f === '/d/b' ? ['/n', '/d/b'] : [f]) m.get(g)!.set(`user.x${s.name}`, v.toString('hex'))
          } else if (s.k === 'rm') {
            const f = files[s.file]
            const had = m.get(f)!.has(`user.x${s.name}`)
            expect(code(() => ns.removeXattr(f, B(`user.x${s.name}`)))).to.equal(had ? 'ok' : 'ENODATA')
            for (const g of f === '/n' || f === '/d/b' ? ['/n', '/d/b'] : [f]) m.get(g)!.delete(`user.x${s.name}`)
          } else if (s.k === 'write') {
            ns.writeFile(files[s.file] === '/d' ? '/a' : files[s.file], B(`w${next}`))
          } else if (s.k === 'clone') {
            const c = `c${next++}`
            clone(vol, {fileset: name, path: '/'}, {fileset: c}, {mode: 'sync'})
            models.set(c, new Map([...m].map(([k, v]) => [k, new Map(v)])))
          } else if (name !== 'root') {
            deleteFileset(vol, name)
            models.delete(name)
          }
          vol.commit()
          for (const [fname, fm] of models) {
            const fns = namespace(vol, fname)
            for (const f of files) {
              const got = Object.fromEntries(fns.listXattrs(f).map((x) => [x.name.toString(), x.value.toString('hex')]))
              expect(got, `${fname}:${f}`).to.deep.equal(Object.fromEntries(fm.get(f)!))
            }
          }
        }
        vol.close()
        const r = fsckDevice(dev, {repair: false})
        expect(r.problems, JSON.stringify(r.problems)).to.deep.equal([])
        vol = Volume.openDevice(dev, {write: true})
        for (const n of models.keys()) if (n !== 'root') deleteFileset(vol, n)
        const ns = namespace(vol, 'root')
        for (const f of files) for (const x of ns.listXattrs(f).slice()) ns.removeXattr(f, x.name)
        vol.commit()
        expect([vol.sb.freeBlocks, vol.sb.freeInodes]).to.deep.equal(free1)
        ns.remove('/a')
        ns.remove('/n')
        ns.remove('/d', {recursive: true})
        vol.commit()
        expect([vol.sb.freeBlocks, vol.sb.freeInodes]).to.deep.equal(free0)
      } finally {
        vol.close()
      }
    }), {numRuns: runs})
  })
})

describe('compatibility: an image made before extended attributes and special files', function () {
  this.timeout(120000)
  // fixtures/compat/v1-8483799.img.gz was made by prism at commit 8483799 (format 1 without
  // either feature): a tree with a hard link, a symlink, a sparse file and a noclone mark, a
  // sync clone, a lazy clone still expanding, then a write in root.
  const fixture = path.join(ROOT, 'fixtures/compat/v1-8483799.img.gz')
  const h = (b: Buffer) => createHash('sha256').update(b).digest('hex').slice(0, 16)

  it('opens and reads unchanged, checks clean, then gains the features on first use', () => {
    const dir = tmpDir()
    const img = path.join(dir, 'old.img')
    fs.writeFileSync(img, zlib.gunzipSync(fs.readFileSync(fixture)))
    const sum = sha256File(img)
    const r0 = fsckImage(img, {repair: false})
    expect(r0.problems).to.deep.equal([])
    expect(sha256File(img)).to.equal(sum)
    const want: Record<string, Record<string, string>> = {
      root: {'/etc/hostname': '7f8b1dfc466b6249', '/etc/passwd': '037d604c1c026b9f', '/usr/bin/tool': 'df8d84fa35e1b983', '/usr/bin/tool2': 'df8d84fa35e1b983', '/sparse': '9d7a3d66e14dadbd', '/home/alice/notes.txt': '444e0fffbd825e96', '/home/alice/.ssh': 'b37e50cedcd3e3f1'},
      sync1: {'/etc/hostname': '5891b5b522d5df08', '/etc/passwd': '037d604c1c026b9f', '/usr/bin/tool': 'df8d84fa35e1b983', '/sparse': '9d7a3d66e14dadbd'},
      lazy1: {'/etc/hostname': '5891b5b522d5df08', '/usr/bin/tool2': 'df8d84fa35e1b983', '/sparse': '9d7a3d66e14dadbd'},
    }
    withImage(img, {write: true}, (vol) => {
      for (const [f, files] of Object.entries(want)) {
        const ns = namespace(vol, f)
        for (const [p, hash] of Object.entries(files)) expect(h(ns.readFile(p)), `${f}:${p}`).to.equal(hash)
        expect(ns.readlink('/usr/host')).to.equal('../etc/hostname')
        expect(ns.exists('/home/alice', false), f).to.equal(f === 'root') // noclone
      }
      expect(namespace(vol, 'root').stat('/usr/bin/tool').nlink).to.equal(2)
      expect(vol.sb.incompat & (INCOMPAT_XATTR | INCOMPAT_SPECIAL)).to.equal(0)
      const ns = namespace(vol, 'lazy1')
      ns.setXattr('/etc/hostname', B('user.k'), B('v'))
      ns.mknod('/fifo', 0o010600)
    })
    expect(fsckImage(img, {repair: false}).problems).to.deep.equal([])
    withImage(img, {write: false}, (vol) => {
      expect(vol.sb.incompat & (INCOMPAT_XATTR | INCOMPAT_SPECIAL)).to.equal(INCOMPAT_XATTR | INCOMPAT_SPECIAL)
      expect(namespace(vol, 'lazy1').getXattr('/etc/hostname', B('user.k'))).to.deep.equal(B('v'))
      expect(h(namespace(vol, 'sync1').readFile('/etc/hostname'))).to.equal('5891b5b522d5df08')
    })
  })
})
