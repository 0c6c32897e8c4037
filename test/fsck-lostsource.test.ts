// fsck --repair of a clone in flight (lazy or async) whose source lost its fileset record
// (a damaged fileset-table slot), or whose record names a root that is not its root, while
// the source's tree is whole. The clone's unexpanded
// directories stand for the source's: the repair must bring the source back as a fileset,
// under the id the clone names, so that the clone still shows everything it showed, goes on
// expanding from it, and is kept apart from the source's later writes. Before, the clone
// "could not go on" and every directory it had not expanded became empty, while the source's
// tree went to lost+found (where the source's later changes showed through the clone's
// unexpanded directories, which still stood for those directories).
import {expect} from 'chai'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {FS_EXPANDING} from '../src/format/constants.js'
import {expandAlong, expandAll} from '../src/fs/expand.js'
import {getFileset, listFilesets} from '../src/fs/filesets.js'
import {mkfs, namespace, withImage} from '../src/fs/image.js'
import {Namespace} from '../src/fs/namespace.js'
import type {Volume} from '../src/fs/volume.js'
import {clone, type CloneOptions} from '../src/clone/clone.js'
import {fsckImage, type FsckResult} from '../src/fsck/index.js'
import {sha} from './crash-lib.js'
import {RawImage} from './damage.js'

function show(r: FsckResult): string {
  return [...r.notes, ...r.problems.map((p) => `${p.code} ${p.where}: ${p.message}${p.fixed ? ' [fixed]' : ''}`)].join('\n')
}

/** root: inline and hashed directories, a deep chain, hard links, a symlink, files of every size. */
function fill(vol: Volume): void {
  const ns = namespace(vol, 'root')
  ns.mkdir('/d/sub/deeper', {parents: true})
  ns.writeFile('/d/f', Buffer.from('f in d\n'))
  ns.writeFile('/d/sub/g', Buffer.alloc(20_000, 7))
  ns.writeFile('/d/sub/deeper/h', Buffer.from('deep\n'))
  ns.mkdir('/hashed')
  for (let i = 0; i < 300; i++) ns.writeFile(`/hashed/f${i}`, Buffer.from(`file ${i}\n`))
  ns.writeFile('/links-a', Buffer.from('linked\n'))
  ns.link('/links-a', '/d/links-b')
  ns.symlink('d/f', '/s')
  ns.writeFile('/top', Buffer.from('top\n'))
  ns.writeFile('/secret.key', Buffer.from('not for clones\n'))
  vol.commit()
}

/** Each fileset's tree as its users see it (names, types, modes, content), by fileset name. */
function views(img: string): Map<string, string[]> {
  return withImage(img, {write: false}, (vol) => {
    const out = new Map<string, string[]>()
    for (const f of listFilesets(vol)) {
      // By path, as a user sees it: an unexpanded directory lists its source's entries.
      const ns = new Namespace(vol, f)
      const lines: string[] = []
      const walk = (dir: string) => {
        for (const e of ns.readdir(dir).sort((a, b) => a.name.localeCompare(b.name))) {
          const p = `${dir === '/' ? '' : dir}/${e.name}`
          const st = ns.stat(p)
          const head = `${p} ${st.type} ${st.mode.toString(8)} ${st.uid}:${st.gid}`
          if (st.type === 'dir') { lines.push(head); walk(p) }
          else if (st.type === 'symlink') lines.push(`${head} -> ${ns.readlink(p)}`)
          else lines.push(`${head} ${sha(ns.readFile(p))}`)
        }
      }
      walk('/')
      out.set(f.name, lines)
    }
    return out
  })
}

/** The source after the repair: `root` when its record survived, else the one fileset recovered. */
function sourceName(img: string): string {
  const names = withImage(img, {write: false}, (vol) => listFilesets(vol).map((f) => f.name))
  if (names.includes('root')) return 'root'
  const r = names.filter((n) => n.startsWith('recovered-'))
  expect(r, names.join(' ')).to.have.length(1)
  return r[0]
}

/**
 * How the source's record is damaged: lost whole (zeroed, or garbage that fails its
 * checksum), or sound but naming as its root an inode that is not its root directory (a
 * free inode, a regular file, the root of one of its clones).
 */
type Damage = 'zeroed' | 'garbage' | 'root: a free inode' | 'root: a file' | 'root: the other\'s root'
const DAMAGES: Damage[] = ['zeroed', 'garbage', 'root: a free inode', 'root: a file', 'root: the other\'s root']

/** Damages the record of fileset `name` (`other`: the clone, or the source, whose root it may be given). */
function lose(img: string, name: string, how: Damage, other: string): void {
  const {slot, root} = withImage(img, {write: false}, (vol) => {
    const free = (() => { for (let i = vol.sb.inodeCount; i > 0; i--) if (!vol.tryIget(i)) return i; return 0 })()
    const inodes: Record<string, number> = {
      'root: a free inode': free,
      'root: a file': namespace(vol, 'root').resolve('/top').ino,
      'root: the other\'s root': getFileset(vol, other).rootIno,
    }
    return {slot: getFileset(vol, name).slot, root: inodes[how] ?? 0}
  })
  const raw = new RawImage(img)
  if (how === 'zeroed' || how === 'garbage') raw.patchFileset(slot, (b) => b.fill(how === 'zeroed' ? 0 : 0xa5), false)
  else raw.patchFileset(slot, (b) => b.writeUInt32LE(root, 0x04))
}

/** fsck without repair reports what --repair fixes (exit 4, then 1); a second repair finds nothing. */
function repair(img: string): FsckResult {
  const check = fsckImage(img, {repair: false})
  expect(check.exitCode, show(check)).to.equal(4)
  const r = fsckImage(img, {repair: true})
  expect(r.exitCode, show(r)).to.equal(1)
  expect(check.problems.map((p) => `${p.code} ${p.where}: ${p.message}`)).to.deep.equal(r.problems.map((p) => `${p.code} ${p.where}: ${p.message}`))
  const again = fsckImage(img, {repair: true})
  expect(again.exitCode, show(again)).to.equal(0)
  return r
}

interface Case {
  name: string
  clones: Array<{name: string, opts: CloneOptions, expand?: string[], write?: boolean}>
}

const CASES: Case[] = [
  {name: 'a lazy clone, nothing expanded', clones: [{name: 'L', opts: {mode: 'lazy'}}]},
  {name: 'a lazy clone, partly expanded and written to', clones: [{name: 'L', opts: {mode: 'lazy'}, expand: ['d'], write: true}]},
  {name: 'an async clone mid-expansion, with exclude patterns', clones: [{name: 'A', opts: {mode: 'async', exclude: ['*.key', '/hashed/f1*']}, expand: ['hashed']}]},
  {name: 'two clones of the source, lazy and async', clones: [
    {name: 'L', opts: {mode: 'lazy'}, expand: ['d', 'sub']},
    {name: 'A', opts: {mode: 'async', exclude: ['/d/sub']}},
  ]},
]

describe('fsck --repair: a clone in flight whose source lost its fileset record', function () {
  this.timeout(120_000)
  let tmp: string
  beforeEach(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-lostsource-')) })
  afterEach(() => fs.rmSync(tmp, {recursive: true, force: true}))

  for (const c of CASES) {
    for (const how of DAMAGES) {
      it(`${c.name} (the source's record: ${how}): the source comes back whole, under its id; the clones show what they showed and go on expanding from it`, () => {
        const img = path.join(tmp, 'disk.img')
        const vol = mkfs(img, {size: 32 * 1024 * 1024, inodeCount: 4096})
        fill(vol)
        for (const k of c.clones) {
          clone(vol, {fileset: 'root', path: '/'}, {fileset: k.name}, k.opts)
          if (k.expand) expandAlong(vol, getFileset(vol, k.name), k.expand.map((n) => Buffer.from(n)))
          if (k.write) {
            const ns = namespace(vol, k.name)
            ns.writeFile('/d/new-in-clone', Buffer.from('made in the clone\n'))
            ns.writeFile('/top', Buffer.from('top, changed in the clone\n'))
          }
        }
        vol.close()
        const before = views(img)
        const srcId = withImage(img, {write: false}, (v) => getFileset(v, 'root').id)

        lose(img, 'root', how, c.clones[0].name)
        const r = repair(img)
        expect(r.problems.map((p) => p.code), show(r)).to.include(how.startsWith('root') ? 'FILESET_ROOT_RECOVERED' : 'FILESET_SOURCE_RECOVERED')
        for (const bad of ['CLONE_BAD_SOURCE', 'UNEXPANDED_BAD', 'FILESET_BAD_PARENT', 'INODE_UNREACHABLE']) expect(r.problems.map((p) => p.code), show(r)).to.not.include(bad)

        // The source is whole, under its old id; every clone shows exactly what it showed and is
        // still expanding from it.
        const src = sourceName(img)
        const after = views(img)
        expect(after.get(src)).to.deep.equal(before.get('root'))
        for (const k of c.clones) expect(after.get(k.name), k.name).to.deep.equal(before.get(k.name))
        withImage(img, {write: false}, (v) => {
          expect(getFileset(v, src).id).to.equal(srcId)
          for (const k of c.clones) {
            const f = getFileset(v, k.name)
            expect([f.state, f.srcFileset, f.parentId], k.name).to.deep.equal([FS_EXPANDING, srcId, srcId])
          }
        })

        // The source's writes stay out of its clones (its clone stamp is set again), and each
        // clone expands to what it showed.
        withImage(img, {write: true}, (v) => {
          const ns = namespace(v, src)
          ns.writeFile('/d/sub/g', Buffer.from('changed in the source after the repair\n'))
          ns.unlink('/top')
          ns.unlink('/d/sub/deeper/h')
          ns.rmdir('/d/sub/deeper')
          ns.writeFile('/hashed/f200', Buffer.from('changed\n'))
        })
        const changed = views(img)
        for (const k of c.clones) expect(changed.get(k.name), `${k.name} after the source changed`).to.deep.equal(before.get(k.name))
        withImage(img, {write: true}, (v) => { for (const k of c.clones) expandAll(v, getFileset(v, k.name)) })
        const expanded = views(img)
        for (const k of c.clones) expect(expanded.get(k.name), `${k.name} expanded`).to.deep.equal(before.get(k.name))
        const last = fsckImage(img, {repair: false})
        expect(last.exitCode, show(last)).to.equal(0)
      })
    }
  }

  for (const c of CASES.filter((x) => x.clones.length === 1)) {
    for (const how of DAMAGES.filter((h) => h.startsWith('root'))) {
      it(`${c.name} (the clone's record: ${how}): the clone gets its own tree back as its root, showing what it showed`, () => {
        const img = path.join(tmp, 'disk.img')
        const vol = mkfs(img, {size: 32 * 1024 * 1024, inodeCount: 4096})
        fill(vol)
        const k = c.clones[0]
        clone(vol, {fileset: 'root', path: '/'}, {fileset: k.name}, k.opts)
        if (k.expand) expandAlong(vol, getFileset(vol, k.name), k.expand.map((n) => Buffer.from(n)))
        if (k.write) namespace(vol, k.name).writeFile('/d/new-in-clone', Buffer.from('made in the clone\n'))
        vol.close()
        const before = views(img)
        lose(img, k.name, how, 'root')
        const r = repair(img)
        expect(r.problems.map((p) => p.code), show(r)).to.include('FILESET_ROOT_RECOVERED')
        for (const bad of ['CLONE_BAD_SOURCE', 'UNEXPANDED_BAD', 'INODE_UNREACHABLE']) expect(r.problems.map((p) => p.code), show(r)).to.not.include(bad)
        const after = views(img)
        expect(after.get('root')).to.deep.equal(before.get('root'))
        expect(after.get(k.name)).to.deep.equal(before.get(k.name))
        withImage(img, {write: true}, (v) => {
          namespace(v, 'root').writeFile('/d/sub/g', Buffer.from('changed in the source after the repair\n'))
          expandAll(v, getFileset(v, k.name))
        })
        expect(views(img).get(k.name)).to.deep.equal(before.get(k.name))
        expect(fsckImage(img, {repair: false}).exitCode).to.equal(0)
      })
    }
  }

  it('a chain (root, a lazy clone of it, a lazy clone of that) whose middle record is lost: the source of the first stays whole, nothing is left inconsistent', () => {
    const img = path.join(tmp, 'disk.img')
    const vol = mkfs(img, {size: 32 * 1024 * 1024, inodeCount: 4096})
    fill(vol)
    clone(vol, {fileset: 'root', path: '/'}, {fileset: 'L1'}, {mode: 'lazy', exclude: ['*.key']})
    clone(vol, {fileset: 'L1', path: '/'}, {fileset: 'L2'}, {mode: 'lazy'})
    vol.close()
    const before = views(img)
    lose(img, 'L1', 'zeroed', 'L2')
    const r = repair(img)
    expect(r.problems.map((p) => p.code), show(r)).to.include('FILESET_SOURCE_RECOVERED')
    const after = views(img)
    expect(after.get('root')).to.deep.equal(before.get('root'))
    // L1's record held its own source and exclude patterns: without them it cannot go on as a
    // clone (it could show what it was made to leave out), so its unexpanded directories become
    // empty, and L2, which expands from it, shows the same; nothing excluded shows anywhere.
    for (const [name, lines] of after) {
      if (name !== 'root') expect(lines.filter((l) => l.includes('secret.key')), name).to.deep.equal([])
    }
  })
})
