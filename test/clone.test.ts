// Cloning through the library on real image files: isolation at file and block level,
// hard links across clones (the paper's Fig. 4), counter overflow, selective cloning,
// grafting, fileset deletion and space accounting. fsck checks the image after each test.
import {expect} from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import {clone, excludeMatcher, parseExcludeFile} from '../src/clone/clone.js'
import {BLOCK_SIZE, IF_NOCLONE} from '../src/format/constants.js'
import {loadExtents} from '../src/fs/extents.js'
import {deleteFileset, namespace, withImage} from '../src/fs/image.js'
import {expandAll} from '../src/fs/expand.js'
import {chmodPath, chownPath} from '../src/ops/attrs.js'
import {getFileset, listFilesets} from '../src/fs/filesets.js'
import {filesetSpace} from '../src/fs/space.js'
import {fsckImage} from '../src/fsck/index.js'
import type {Namespace} from '../src/fs/namespace.js'
import {edit, newImage, read, snapshot, tmpDir} from './helpers.js'

function used(img: string): number {
  return withImage(img, {write: false}, (vol) => vol.sb.dataBlocks - vol.sb.freeBlocks)
}

describe('clone', function () {
  this.timeout(120000)
  let dir: string
  let img: string
  beforeEach(() => {
    dir = tmpDir()
    img = newImage(dir, 128 << 20)
    edit(img, (ns) => {
      ns.mkdir('/etc')
      ns.mkdir('/home/alice', {parents: true})
      ns.mkdir('/var/log', {parents: true})
      ns.writeFile('/etc/hostname', Buffer.from('source\n'))
      ns.writeFile('/home/alice/key', Buffer.from('secret'))
      ns.writeFile('/var/log/syslog', Buffer.from('log\n'))
      ns.writeFile('/var/log/old.gz', Buffer.from('gz'))
      ns.writeFile('/big', Buffer.alloc(4 << 20, 0x42))
      ns.symlink('/etc/hostname', '/hn')
    })
  })
  afterEach(function () {
    if (this.currentTest?.state === 'passed') {
      const r = fsckImage(img, {repair: false})
      expect(r.problems, JSON.stringify(r.problems)).to.deep.equal([])
      expect(r.exitCode).to.equal(0)
    }
    fs.rmSync(dir, {recursive: true, force: true})
  })

  it('shares every file and copies no data', () => {
    const before = used(img)
    withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c1'}))
    expect(used(img) - before).to.equal(0) // small directories live in their inodes
    read(img, (ns, vol) => {
      const c = namespace(vol, 'c1')
      expect(snapshot(c)).to.deep.equal(snapshot(ns))
      expect(c.stat('/big').ino).to.equal(ns.stat('/big').ino)
      expect(c.stat('/big').share).to.equal(2)
      expect(c.stat('/etc').ino).to.not.equal(ns.stat('/etc').ino)
      expect(getFileset(vol, 'c1').parentId).to.equal(getFileset(vol, 'root').id)
    })
  })

  it('isolates contents, attributes and names in both directions', () => {
    withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c1'}))
    const original = read(img, (ns) => snapshot(ns))
    edit(img, (ns) => {
      ns.writeFile('/etc/hostname', Buffer.from('clone\n'))
      ns.chmod('/big', 0o600)
      ns.truncate('/var/log/syslog', 1)
      ns.rename('/home/alice', '/home/bob')
      ns.unlink('/hn')
      ns.writeFile('/new', Buffer.from('only in the clone'))
      ns.mkdir('/etc/extra')
    }, 'c1')
    read(img, (ns) => expect(snapshot(ns)).to.deep.equal(original))
    const cloneSnap = read(img, (ns) => snapshot(ns), 'c1')
    edit(img, (ns) => {
      ns.writeFile('/big', Buffer.from('source changed'), {append: true})
      ns.remove('/var', {recursive: true})
      ns.link('/etc/hostname', '/etc/hostname2')
    })
    read(img, (ns) => expect(snapshot(ns)).to.deep.equal(cloneSnap), 'c1')
    read(img, (ns) => expect(ns.readFile('/etc/hostname').toString()).to.equal('source\n'))
  })

  it('copies only the blocks written, and nothing for a chmod or a rename', () => {
    withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c1'}))
    let before = used(img)
    edit(img, (ns) => { ns.chmod('/big', 0o600); ns.rename('/big', '/big2') }, 'c1')
    expect(used(img) - before).to.equal(0)
    before = used(img)
    edit(img, (ns) => ns.writeInode(ns.resolveOwned('/big2'), 1 << 20, Buffer.alloc(BLOCK_SIZE, 0x43)), 'c1')
    expect(used(img) - before).to.equal(1)
    read(img, (ns, vol) => {
      const c = namespace(vol, 'c1')
      const data = c.readFile('/big2')
      expect(data[(1 << 20) - 1]).to.equal(0x42)
      expect(data[1 << 20]).to.equal(0x43)
      expect(ns.readFile('/big').every((b) => b === 0x42)).to.equal(true)
      const src = loadExtents(vol, ns.resolve('/big')).toArray()
      expect(vol.refcount(src[0].p)).to.equal(2)
      expect(vol.refcount(src[0].p + 256)).to.equal(1) // the overwritten block is the source's alone
    })
  })

  it('keeps hard links one file on each side (paper Fig. 4)', () => {
    edit(img, (ns) => {
      ns.mkdir('/a'); ns.mkdir('/x')
      ns.writeFile('/a/b', Buffer.from('v1'))
      ns.link('/a/b', '/x/y')
    })
    withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: 'fs2'}))
    edit(img, (ns) => ns.writeFile('/a/b', Buffer.from('v2')))
    read(img, (ns, vol) => {
      const fs2 = namespace(vol, 'fs2')
      expect(ns.readFile('/x/y').toString()).to.equal('v2')
      expect(fs2.readFile('/a/b').toString()).to.equal('v1')
      expect(fs2.readFile('/x/y').toString()).to.equal('v1')
      for (const n of [ns, fs2]) {
        expect(n.stat('/a/b').nlink).to.equal(2)
        expect(n.stat('/a/b').ino).to.equal(n.stat('/x/y').ino)
      }
    })
    // A link made to a shared file makes it private first.
    edit(img, (ns) => ns.link('/etc/hostname', '/etc/h2'), 'fs2')
    read(img, (ns, vol) => {
      expect(ns.stat('/etc/hostname').nlink).to.equal(1)
      expect(namespace(vol, 'fs2').stat('/etc/h2').nlink).to.equal(2)
    })
  })

  it('gives an excluded hard link its own link count', () => {
    edit(img, (ns) => ns.link('/etc/hostname', '/home/alice/hn-link'))
    withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'}, {exclude: ['/home']}))
    read(img, (ns) => {
      expect(ns.stat('/etc/hostname').nlink).to.equal(1)
      expect(ns.exists('/home')).to.equal(false)
    }, 'c')
    read(img, (ns) => expect(ns.stat('/etc/hostname').nlink).to.equal(2))
  })

  it('duplicates blocks instead of overflowing their 8-bit counters', () => {
    const n = 300
    for (let i = 0; i < n; i++) {
      withImage(img, {write: true}, (vol) => {
        clone(vol, {fileset: 'root', path: '/etc'}, {fileset: `c${i}`})
        // a chmod makes the clone's own inode, which references every block once more
        namespace(vol, `c${i}`).chmod('/hostname', 0o600)
        namespace(vol, `c${i}`).writeFile('/data', Buffer.alloc(2 * BLOCK_SIZE, i % 256))
      })
    }
    withImage(img, {write: true}, (vol) => {
      const ns = namespace(vol, 'root')
      ns.writeFile('/shared', Buffer.alloc(BLOCK_SIZE, 7))
      for (let i = 0; i < n; i++) {
        clone(vol, {fileset: 'root', path: '/'}, {fileset: `d${i}`}, {exclude: ['/big', '/home', '/var']})
        namespace(vol, `d${i}`).chmod('/shared', 0o600)
        vol.maybeCommit()
      }
    })
    read(img, (ns, vol) => {
      expect(ns.stat('/etc/hostname').share).to.equal(n + 1) // the c clones made their own copies
      const p = loadExtents(vol, ns.resolve('/shared')).toArray()[0].p
      expect(vol.refcount(p)).to.equal(255)
      for (const i of [0, 150, n - 1]) {
        expect(namespace(vol, `d${i}`).readFile('/shared').every((b) => b === 7)).to.equal(true)
        expect(namespace(vol, `c${i}`).readFile('/data')[5]).to.equal(i % 256)
      }
    })
  })

  it('matches exclude globs and reads exclude files', () => {
    const m = excludeMatcher(['/var/log/*.gz', 'syslog', '/nothing', '**/alice'])
    expect(m.test('/var/log/old.gz', false)).to.equal(0)
    expect(m.test('/var/log/syslog', false)).to.equal(1)
    expect(m.test('/x/y/syslog', false)).to.equal(1)
    expect(m.test('/syslog', false)).to.equal(1)
    expect(m.test('/home/alice', true)).to.equal(3)
    expect(m.test('/var/log', true)).to.equal(-1)
    expect(m.unmatched()).to.deep.equal(['/nothing'])
    // As a .gitignore: '#' starts a comment only at the start of a line (test/exclude.test.ts).
    expect(parseExcludeFile('# comment\n/home\n\n*.log  \n')).to.deep.equal(['/home', '*.log'])
    const warnings: string[] = []
    withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'}, {exclude: ['/var/log/*.gz', '/home', '/nope'], onWarning: (w) => warnings.push(w)}))
    expect(warnings).to.deep.equal(["--exclude '/nope' matched nothing"])
    read(img, (ns) => {
      expect(ns.exists('/home')).to.equal(false)
      expect(ns.exists('/var/log/old.gz')).to.equal(false)
      expect(ns.exists('/var/log/syslog')).to.equal(true)
    }, 'c')
  })

  it('leaves out paths marked nonclonable', () => {
    edit(img, (ns) => { ns.setFlag('/home/alice', IF_NOCLONE, true); ns.setFlag('/etc/hostname', IF_NOCLONE, true) })
    withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'}))
    read(img, (ns) => {
      expect(ns.exists('/home')).to.equal(true)
      expect(ns.exists('/home/alice')).to.equal(false)
      expect(ns.exists('/etc/hostname')).to.equal(false)
    }, 'c')
    read(img, (ns) => expect(ns.stat('/home/alice').flags).to.include('noclone'))
  })

  it('puts replacements in place', () => {
    const host = path.join(dir, 'hostname')
    fs.writeFileSync(host, 'from the host\n')
    withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'}, {
      exclude: ['/home'],
      replace: [
        {path: '/home', source: '@empty-dir'}, {path: '/var/log/syslog', source: '@empty-file'},
        {path: '/etc/hostname', source: host}, {path: '/opt/big', source: 'root:/big'},
      ],
    }))
    read(img, (ns) => {
      expect(ns.readdir('/home')).to.deep.equal([])
      expect(ns.stat('/var/log/syslog').size).to.equal(0)
      expect(ns.readFile('/etc/hostname').toString()).to.equal('from the host\n')
      expect(ns.readFile('/opt/big').length).to.equal(4 << 20)
    }, 'c')
    read(img, (ns) => expect(ns.readFile('/etc/hostname').toString()).to.equal('source\n'))
  })

  it('grafts a subtree into another fileset', () => {
    withImage(img, {write: true}, (vol) => {
      clone(vol, {fileset: 'root', path: '/'}, {fileset: 'web'}, {exclude: ['/var']})
      expect(() => clone(vol, {fileset: 'root', path: '/var'}, {fileset: 'web', path: '/srv/var'})).to.throw(/no such file/)
      namespace(vol, 'web').mkdir('/srv')
      clone(vol, {fileset: 'root', path: '/var'}, {fileset: 'web', path: '/srv/var'}, {exclude: ['*.gz']})
      clone(vol, {fileset: 'root', path: '/etc'}, {fileset: 'web', path: '/srv'}) // into an existing directory
      expect(() => clone(vol, {fileset: 'root', path: '/etc'}, {fileset: 'root', path: '/etc/inside'})).to.throw(/inside itself/)
    })
    read(img, (ns) => {
      expect(ns.readdir('/srv').map((e) => e.name)).to.deep.equal(['etc', 'var'])
      expect(ns.readFile('/srv/var/log/syslog').toString()).to.equal('log\n')
      expect(ns.exists('/srv/var/log/old.gz')).to.equal(false)
      expect(ns.stat('/srv').nlink).to.equal(4)
    }, 'web')
  })

  it('clones clones, and deletes any of them in any order, freeing only what is unique', () => {
    const base = used(img)
    withImage(img, {write: true}, (vol) => {
      clone(vol, {fileset: 'root', path: '/'}, {fileset: 'a'})
      clone(vol, {fileset: 'a', path: '/'}, {fileset: 'b'})
      namespace(vol, 'b').writeFile('/b-only', Buffer.alloc(10 * BLOCK_SIZE, 1))
      clone(vol, {fileset: 'b', path: '/'}, {fileset: 'c'})
      clone(vol, {fileset: 'root', path: '/etc'}, {fileset: 'c', path: '/etc-graft'})
    })
    read(img, (_, vol) => {
      const sp = filesetSpace(vol, getFileset(vol, 'b'))
      expect(sp.uniqueBlocks).to.equal(0) // b-only is shared with c
      expect(sp.referencedBlocks).to.equal(1024 + 10)
    })
    withImage(img, {write: true}, (vol) => deleteFileset(vol, 'a'))
    expect(used(img)).to.equal(base + 10)
    withImage(img, {write: true}, (vol) => deleteFileset(vol, 'c'))
    read(img, (_, vol) => expect(filesetSpace(vol, getFileset(vol, 'b')).uniqueBlocks).to.equal(10))
    withImage(img, {write: true}, (vol) => deleteFileset(vol, 'root'))
    read(img, (_, vol) => {
      expect(listFilesets(vol).map((f) => f.name)).to.deep.equal(['b'])
      expect(getFileset(vol, 'b').parentId).to.equal(0)
      expect(namespace(vol, 'b').readFile('/big').length).to.equal(4 << 20)
    }, 'b')
    withImage(img, {write: true}, (vol) => deleteFileset(vol, 'b'))
    withImage(img, {write: false}, (vol) => expect(vol.sb.freeBlocks).to.equal(vol.sb.dataBlocks))
  })
})

describe('clone: a directory copied whole (its layout) or entry by entry', function () {
  this.timeout(120000)
  let dir: string
  beforeEach(() => { dir = tmpDir() })
  afterEach(() => fs.rmSync(dir, {recursive: true, force: true}))

  /** A tree with directories of each kind: some a sync clone copies whole, some it must clone entry by entry. */
  function fill(img: string): void {
    edit(img, (ns, vol) => {
      ns.mkdir('/small')
      ns.writeFile('/small/a', Buffer.from('a\n'))
      ns.symlink('a', '/small/l')
      ns.mkdir('/hashed/sub', {parents: true})
      ns.writeFile('/hashed/sub/deep', Buffer.alloc(9000, 7))
      for (let i = 0; i < 600; i++) ns.writeFile(`/hashed/f${i}`, Buffer.alloc(i * 17 % 5000, i))
      vol.maybeCommit()
      ns.mkdir('/linked') // a hard-linked file: its clone is a private copy
      ns.writeFile('/linked/x', Buffer.from('x'))
      ns.writeFile('/linked/z', Buffer.from('z'))
      ns.link('/linked/x', '/linked/y')
      ns.mkdir('/noclone')
      ns.writeFile('/noclone/keep', Buffer.from('k'))
      ns.writeFile('/noclone/secret', Buffer.from('s'))
      ns.setFlag('/noclone/secret', IF_NOCLONE, true)
      ns.mkdir('/skip')
      for (const n of ['a', 'b.tmp', 'c']) ns.writeFile(`/skip/${n}`, Buffer.from(n))
      ns.mkdir('/huge') // more entries than one step copies whole
      for (let i = 0; i < 4200; i++) {
        ns.writeFile(`/huge/n${i}`, Buffer.from(String(i)))
        if (i % 500 === 0) vol.maybeCommit()
      }
    })
  }

  const seed = (ns: Namespace, p: string): number => ns.resolveFull(p, false).inode.r.dirSeed

  function expectClean(img: string): void {
    const r = fsckImage(img, {repair: false})
    expect(r.problems, JSON.stringify(r.problems.slice(0, 5))).to.deep.equal([])
  }

  it('copies a directory whose every entry is cloned, and clones the others entry by entry: the same tree either way, each side on its own after', () => {
    const img = newImage(dir, 256 << 20, {inodeCount: 16384})
    fill(img)
    const source = read(img, (ns) => snapshot(ns))
    withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'}, {exclude: ['*.tmp']}))
    const want = {...source}
    delete want['/skip/b.tmp']
    delete want['/noclone/secret']
    read(img, (c, vol) => {
      expect(snapshot(c)).to.deep.equal(want)
      const root = namespace(vol, 'root')
      for (const p of ['/', '/small', '/hashed', '/hashed/sub']) expect(seed(c, p), `${p}: copied whole`).to.equal(seed(root, p))
      for (const p of ['/linked', '/noclone', '/skip', '/huge']) expect(seed(c, p), `${p}: entry by entry`).to.not.equal(seed(root, p))
      expect(c.stat('/hashed/f5').ino).to.equal(root.stat('/hashed/f5').ino)
      expect(c.stat('/hashed/f5').share).to.equal(2)
      expect(c.stat('/linked/x').ino).to.not.equal(root.stat('/linked/x').ino)
      expect(c.stat('/linked/y').ino).to.equal(c.stat('/linked/x').ino)
    }, 'c')
    expectClean(img)
    // The copy is a directory of its own: names added and removed in it stay in it.
    edit(img, (c) => {
      for (let i = 0; i < 300; i++) c.writeFile(`/hashed/new${i}`, Buffer.from(`new ${i}`))
      for (let i = 0; i < 600; i += 3) c.remove(`/hashed/f${i}`)
      c.rename('/hashed/f1', '/small/moved')
    }, 'c')
    expect(read(img, (ns) => snapshot(ns))).to.deep.equal(source)
    read(img, (c) => {
      const names = c.readdir('/hashed').map((e) => e.name).sort()
      const expected = ['sub', ...Array.from({length: 600}, (_, i) => i).filter((i) => i % 3 !== 0 && i !== 1).map((i) => `f${i}`), ...Array.from({length: 300}, (_, i) => `new${i}`)].sort()
      expect(names).to.deep.equal(expected)
      for (const n of expected) expect(c.exists(`/hashed/${n}`), n).to.equal(true)
      expect(c.readFile('/small/moved')).to.deep.equal(Buffer.alloc(17, 1))
    }, 'c')
    expectClean(img)
    // The source's deletion leaves the clone whole; the clone's, nothing behind.
    withImage(img, {write: true}, (vol) => deleteFileset(vol, 'root'))
    read(img, (c) => {
      expect(c.readFile('/hashed/sub/deep')).to.deep.equal(Buffer.alloc(9000, 7))
      expect(c.readFile('/hashed/f599')).to.deep.equal(Buffer.alloc(599 * 17 % 5000, 599))
      expect(c.readFile('/huge/n4199').toString()).to.equal('4199')
    }, 'c')
    expectClean(img)
    withImage(img, {write: true}, (vol) => deleteFileset(vol, 'c'))
    withImage(img, {write: false}, (vol) => expect(vol.sb.freeBlocks).to.equal(vol.sb.dataBlocks))
  })

  it('clones entry by entry, in small transactions, where copying a directory whole would not fit a small journal', () => {
    const img = newImage(dir, 256 << 20, {inodeCount: 16384, journalBlocks: 128})
    fill(img)
    const source = read(img, (ns) => snapshot(ns))
    withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'}))
    read(img, (c, vol) => {
      const want = {...source}
      delete want['/noclone/secret']
      expect(snapshot(c)).to.deep.equal(want)
      const root = namespace(vol, 'root')
      expect(seed(c, '/small')).to.equal(seed(root, '/small'))
      expect(seed(c, '/hashed'), '600 entries in a 128-block journal: entry by entry').to.not.equal(seed(root, '/hashed'))
    }, 'c')
    expectClean(img)
  })
})

describe('clone: work on a directory larger than one transaction', function () {
  this.timeout(120000)
  let dir: string
  beforeEach(() => { dir = tmpDir() })
  afterEach(() => fs.rmSync(dir, {recursive: true, force: true}))

  // A 128-block journal holds about 30 inode-table blocks of share counts in a quarter: a
  // directory of 2,000 files (125 such blocks) cannot be expanded in one transaction. It was
  // refused with ENOSPC ("more than the journal holds"), and the clone could never be read.
  for (const mode of ['lazy', 'async'] as const) {
    it(`a ${mode} clone expands it in pieces: read on demand, by the expander, and after a source change`, () => {
      const img = newImage(dir, 128 << 20, {inodeCount: 8192, journalBlocks: 128})
      edit(img, (ns, vol) => {
        ns.mkdir('/big/sub', {parents: true})
        ns.writeFile('/big/sub/inner', Buffer.from('inner'))
        for (let i = 0; i < 2000; i++) {
          ns.writeFile(`/big/f${i}`, Buffer.alloc(i % 7 === 0 ? 5000 : 30, i))
          if (i % 100 === 0) vol.maybeCommit()
        }
        ns.writeFile('/big/linked', Buffer.from('L'))
        ns.link('/big/linked', '/big/sub/linked2')
        ns.writeFile('/big/skip.tmp', Buffer.from('x'))
      })
      const source = read(img, (ns) => snapshot(ns))
      withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'}, {mode, exclude: ['*.tmp']}))
      const want = {...source}
      delete want['/big/skip.tmp']
      // A change in the source after the clone: the guard expands the clone's copy first.
      edit(img, (ns) => ns.writeFile('/big/f3', Buffer.from('changed in root')))
      if (mode === 'async') withImage(img, {write: true}, (vol) => expandAll(vol, getFileset(vol, 'c')))
      read(img, (c) => {
        expect(snapshot(c)).to.deep.equal(want)
        expect(c.stat('/big/f5').share).to.equal(2)
        expect(c.stat('/big/linked').ino).to.equal(c.stat('/big/sub/linked2').ino)
      }, 'c')
      read(img, (ns) => expect(ns.readFile('/big/f3').toString()).to.equal('changed in root'))
      const r = fsckImage(img, {repair: false})
      expect(r.problems, JSON.stringify(r.problems.slice(0, 5))).to.deep.equal([])
      // Deleting the source leaves the clone whole; deleting both leaves nothing behind.
      withImage(img, {write: true}, (vol) => deleteFileset(vol, 'root'))
      read(img, (c) => expect(snapshot(c)).to.deep.equal(want), 'c')
      withImage(img, {write: true}, (vol) => deleteFileset(vol, 'c'))
      withImage(img, {write: false}, (vol) => {
        expect(vol.sb.freeBlocks).to.equal(vol.sb.dataBlocks)
        expect(vol.sb.freeInodes).to.equal(vol.sb.inodeCount)
      })
    })
  }

  it('a sync clone, then chmod -R and chown -R of its copy of the directory, on a 64-block journal', () => {
    const img = newImage(dir, 64 << 20, {inodeCount: 8192, journalBlocks: 64})
    edit(img, (ns, vol) => {
      ns.mkdir('/big')
      for (let i = 0; i < 2000; i++) {
        ns.writeFile(`/big/f${i}`, Buffer.alloc(i % 7 === 0 ? 5000 : 30, i))
        if (i % 50 === 0) vol.maybeCommit()
      }
    })
    const source = read(img, (ns) => snapshot(ns))
    withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'}))
    // Each shared file gets its own copy in c: two inode-table blocks a file, 2,000 files.
    withImage(img, {write: true}, (vol) => {
      const c = namespace(vol, 'c')
      expect(chmodPath(c, '/big', () => 0o600)).to.equal(2001)
      expect(chownPath(c, '/big', {uid: 1000, gid: 100}, {recursive: true})).to.equal(2001)
    })
    expect(read(img, (ns) => snapshot(ns))).to.deep.equal(source)
    read(img, (c, vol) => {
      const root = namespace(vol, 'root')
      for (const i of [0, 7, 1999]) {
        const st = c.stat(`/big/f${i}`)
        expect([st.perm, st.uid, st.gid, st.share]).to.deep.equal([0o600, 1000, 100, 1])
        expect(st.ino).to.not.equal(root.stat(`/big/f${i}`).ino)
        expect(c.readFile(`/big/f${i}`)).to.deep.equal(Buffer.alloc(i % 7 === 0 ? 5000 : 30, i))
      }
    }, 'c')
    const r = fsckImage(img, {repair: false})
    expect(r.problems, JSON.stringify(r.problems.slice(0, 5))).to.deep.equal([])
  })
})
