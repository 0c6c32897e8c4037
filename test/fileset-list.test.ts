// `prism fileset list` (issue 19): bin/run.js's start-up fast path and the oclif command print
// the same bytes (stdout, stderr, exit status) for every kind of image: filesets of every
// state and clone mode, a parent deleted, a grown fileset table, an empty image and one with
// no fileset at all, damaged images (a record, an inline root, a file's inode, a directory's
// entry count, the superblock), a foreign file, a locked image, a missing one and none found;
// text, --json, --no-space and the columns of -o (with -H and -p); and the fast path really is taken (oclif is never loaded)
// except for --help and anything it does not know. The space it reports is checked against
// a plain model of REFER and UNIQUE (every block of every inode a fileset reaches), on a
// varied image and on random ones.
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {pathToFileURL} from 'node:url'
import fc from 'fast-check'
import type {FilesetRow} from '../src/cli/filesetlist.js'
import {clone} from '../src/clone/clone.js'
import {DT_DIR, FS_EXPANDING, IF_INLINE, IF_UNEXPANDED, S_IFCHR, S_IFIFO} from '../src/format/constants.js'
import {LOCALITY_OFF} from '../src/format/locality.js'
import {dirForEach, dirList} from '../src/fs/dir.js'
import {cloneSpec, entriesAsExpanded, expandAll, linkedShownAs, type ExpandNode} from '../src/fs/expand.js'
import {nameText} from '../src/format/name.js'
import {loadExtents} from '../src/fs/extents.js'
import {filesetById, getFileset, listFilesets, saveFileset} from '../src/fs/filesets.js'
import {createEmptyFileset, deleteFileset, mkfs, namespace, renameFileset, withImage} from '../src/fs/image.js'
import type {Inode} from '../src/fs/inode.js'
import {allFilesetSpace, type FilesetSpace} from '../src/fs/space.js'
import type {Volume} from '../src/fs/volume.js'
import {RawImage} from './damage.js'
import {BIN, VIA_OCLIF, edit, holdImageLock, sha256File, tmpDir, type CliResult} from './helpers.js'

/** The package root of the CLI under test, as a file URL ending in '/'. */
const CLI_ROOT = pathToFileURL(path.dirname(path.dirname(BIN))).href + '/'
/** Says on stderr, at exit, whether oclif was loaded (so whether the fast path was taken). */
// oclif ran if its modules were loaded, or the bundle that holds it (dist/cli.cjs, bin/load-bundle.cjs).
const PROBE = `process.on('exit', () => {
  const keys = Object.keys(require.cache)
  const bundles = require.cache[keys.find((k) => k.endsWith('/bin/load-bundle.cjs'))]?.exports.loaded ?? []
  if (keys.some((k) => k.includes('/@oclif/core/')) || bundles.includes('cli')) process.stderr.write('[oclif]')
})`

const ENV = {...process.env, PRISM_IMAGE: '', PRISM_NO_BACKGROUND: '1', PRISM_CONTENT_TYPE: ''}

function spawnCli(nodeArgs: string[], cwd: string): CliResult & {oclif: boolean} {
  const r = spawnSync(process.execPath, nodeArgs, {cwd, env: ENV, maxBuffer: 1 << 30})
  const stderr = r.stderr.toString()
  return {status: r.status ?? -1, stdout: r.stdout.toString(), stderr: stderr.replace('[oclif]', ''), oclif: stderr.includes('[oclif]')}
}

/** `prism ARGS` as a user runs it (bin/run.js), and whether oclif was loaded. */
function viaBin(args: string[], cwd: string): CliResult & {oclif: boolean} {
  const probe = path.join(cwd, '.probe.cjs')
  if (!fs.existsSync(probe)) fs.writeFileSync(probe, PROBE)
  return spawnCli(['--require', probe, BIN, ...args], cwd)
}

/** The same through oclif alone. */
function viaOclif(args: string[], cwd: string): CliResult {
  return spawnCli(['--input-type=module', '-e', VIA_OCLIF, CLI_ROOT, ...args], cwd)
}

/** A row of `fileset list --json`, less what the test does not compare. */
type Row = Omit<FilesetRow, 'created' | 'rootIno'>

/** A tree with something of every kind: hashed and inline directories, large and inline files, links, specials, attributes. */
function fillTree(img: string): void {
  edit(img, (ns) => {
    ns.mkdir('/big/sub', {parents: true})
    for (let i = 0; i < 40; i++) ns.writeFile(`/big/f${i}`, Buffer.from(`file ${i}\n`)) // a hashed directory of inline files
    ns.writeFile('/big/sub/data', Buffer.alloc(300_000, 7)) // blocks, one extent
    let frag = Buffer.alloc(0)
    for (let i = 0; i < 30; i++) frag = Buffer.concat([frag, Buffer.alloc(4096, i)])
    ns.writeFile('/frag', frag)
    ns.writeFile('/small', Buffer.from('inline\n'))
    ns.symlink('small', '/link')
    ns.link('/big/sub/data', '/hard')
    ns.mknod('/fifo', S_IFIFO | 0o644)
    ns.mknod('/dev0', S_IFCHR | 0o600, {major: 1, minor: 3})
    ns.setXattr('/small', Buffer.from('user.note'), Buffer.from('x'.repeat(3000))) // an attribute inode with blocks
    ns.setXattr('/big', Buffer.from('user.tag'), Buffer.from('dir'))
  })
}

/**
 * An image with filesets of every kind: an empty one, sync clones (one written to, one a
 * clone of a clone), an async and a lazy clone still expanding (the lazy one partly
 * expanded), a clone of a subdirectory, a clone whose parent was deleted, one whose parent
 * no record names, a renamed one.
 */
function variedImage(dir: string): string {
  const img = path.join(dir, 'varied.img')
  mkfs(img, {size: 64 << 20}).close()
  fillTree(img)
  withImage(img, {write: true}, (vol) => {
    createEmptyFileset(vol, 'blank')
    clone(vol, {fileset: 'root', path: '/'}, {fileset: 's1'}, {mode: 'sync'})
    vol.maybeCommit()
    namespace(vol, 's1').writeFile('/big/f3', Buffer.from('changed in s1\n'))
    namespace(vol, 's1').writeFile('/new', Buffer.alloc(20_000, 1)) // shared with s2 next
    clone(vol, {fileset: 's1', path: '/'}, {fileset: 's2'}, {mode: 'sync'})
    namespace(vol, 's1').writeFile('/mine', Buffer.alloc(24_000, 2)) // s1's alone
    // Part of a shared file written in s1: its private copy shares the rest block by block.
    const s1 = namespace(vol, 's1')
    s1.setLocality('/big/sub/data', LOCALITY_OFF)
    s1.writeInode(s1.openForWrite('/big/sub/data'), 8192, Buffer.alloc(10, 3))
    // A graft within s1: blocks referenced twice, both times from s1's own inodes (unique to it).
    clone(vol, {fileset: 's1', path: '/big/sub'}, {fileset: 's1', path: '/graft'})
    clone(vol, {fileset: 'root', path: '/'}, {fileset: 'a1'}, {mode: 'async'})
    clone(vol, {fileset: 'root', path: '/'}, {fileset: 'z1'}, {mode: 'lazy'})
    vol.maybeCommit()
    // Expands z1's root only: its copy of the hard-linked /hard is made, while its other name,
    // /big/sub/data, is still shown from root's unexpanded /big (the same file, counted once).
    namespace(vol, 'z1').readFile('/small')
    // A lazy clone of z1, its root expanded too: its copy of z1's copy is the file its /big shows.
    clone(vol, {fileset: 'z1', path: '/'}, {fileset: 'zz'}, {mode: 'lazy'})
    namespace(vol, 'zz').readFile('/small')
    clone(vol, {fileset: 'root', path: '/big'}, {fileset: 'sub'}, {mode: 'sync'})
    clone(vol, {fileset: 'root', path: '/'}, {fileset: 'gone'}, {mode: 'sync'})
    clone(vol, {fileset: 'gone', path: '/'}, {fileset: 'orphan'}, {mode: 'sync'})
    vol.maybeCommit()
    deleteFileset(vol, 'gone') // its clone takes its parent, root
    // A parent that no record names any more (as a build before re-parenting left it): shown as #id.
    clone(vol, {fileset: 'root', path: '/'}, {fileset: 'stray'}, {mode: 'lazy'})
    saveFileset(vol, {...getFileset(vol, 'stray'), parentId: 999})
    renameFileset(vol, 's2', 's2-renamed')
    // A directory of s1's alone, with attributes, shown by a lazy clone: its attribute set is
    // then not s1's alone (expansion shares it).
    namespace(vol, 's1').mkdir('/own')
    namespace(vol, 's1').setXattr('/own', Buffer.from('user.tag'), Buffer.alloc(3000, 5))
    clone(vol, {fileset: 's1', path: '/'}, {fileset: 'zs'}, {mode: 'lazy'})
  })
  return img
}

/**
 * The files the directories not expanded yet of every clone still expanding show (none of
 * them is its own fileset's alone), found plainly: each such directory listed as `ls` lists
 * it (entriesAsExpanded), down to the bottom of its tree.
 */
function modelShown(vol: Volume): {files: Set<number>, attrs: Set<number>} {
  const out = new Set<number>()
  const attrs = new Set<number>()
  for (const f of listFilesets(vol)) {
    if (f.state !== FS_EXPANDING) continue
    const visit = (node: ExpandNode, p: string) => {
      const x = modelBottom(vol, node).r.xattrIno
      if (x) attrs.add(x)
      for (const e of entriesAsExpanded(vol, f, node, p)) {
        if (e.type === DT_DIR) visit(e.node!, `${p}/${nameText(e.name)}`)
        else {
          out.add(e.ino)
          const fx = vol.iget(e.ino).r.xattrIno
          if (fx) attrs.add(fx)
        }
      }
    }
    const visitOwn = (ino: number, p: string) => {
      const d = vol.iget(ino)
      if (d.r.flags & IF_UNEXPANDED) { visit({ino}, p); return }
      for (const e of dirList(vol, d)) if (e.type === DT_DIR) visitOwn(e.ino, `${p}/${nameText(e.name)}`)
    }
    visitOwn(f.rootIno, '')
  }
  return {files: out, attrs}
}

/** The directory an unexpanded one reads through to, found by following its source fields (or the listing's node) plainly. */
function modelBottom(vol: Volume, node: ExpandNode): Inode {
  while (!('ino' in node)) node = node.from
  let d = vol.iget(node.ino)
  while (d.r.flags & IF_UNEXPANDED) d = vol.iget(d.r.srcIno)
  return d
}

/**
 * REFER and UNIQUE as README defines them, worked out plainly: every block of every inode
 * reached, counted in a set. A directory not expanded yet reaches what it shows (as `ls` lists
 * it), none of it the clone's alone; a file some clone shows so is not its own fileset's alone.
 */
function modelSpace(vol: Volume, fsId: number, shown: {files: Set<number>, attrs: Set<number>}): FilesetSpace {
  const shownFiles = shown.files
  const f = filesetById(vol, fsId)!
  const refs = new Set<number>()
  /** block -> references from this fileset's own inodes (share <= 1) */
  const own = new Map<number, number>()
  const attrs = new Map<number, number>()
  const seen = new Set<number>()
  let files = 0
  let dirs = 0
  const blocksOf = (inode: Inode): number[] => {
    if (inode.r.flags & IF_INLINE || inode.isSpecial) return []
    const out: number[] = []
    for (const e of loadExtents(vol, inode)) for (let i = 0; i < e.n; i++) out.push(e.p + i)
    return [...out, ...inode.treeBlocks]
  }
  const take = (inode: Inode, priv: boolean) => {
    for (const b of blocksOf(inode)) {
      refs.add(b)
      if (priv) own.set(b, (own.get(b) ?? 0) + 1)
    }
    if (inode.r.xattrIno) attrs.set(inode.r.xattrIno, (attrs.get(inode.r.xattrIno) ?? 0) + (priv ? 1 : 0))
  }
  const file = (c: Inode, priv: boolean) => {
    if (seen.has(c.ino)) return
    seen.add(c.ino)
    files++
    take(c, priv && c.r.share <= 1 && !shownFiles.has(c.ino))
  }
  const visitShown = (node: ExpandNode, p: string) => {
    dirs++
    take(modelBottom(vol, node), false)
    for (const e of entriesAsExpanded(vol, f, node, p)) {
      if (e.type === DT_DIR) { visitShown(e.node!, `${p}/${nameText(e.name)}`); continue }
      const c = vol.iget(e.ino)
      const ino = c.r.nlink > 1 ? linkedShownAs(vol, f, e.ino) : e.ino
      file(vol.iget(ino), ino !== e.ino)
    }
  }
  const visitDir = (ino: number, p: string) => {
    const d = vol.iget(ino)
    take(d, true)
    // (a directory not expanded yet counts once, with what it shows)
    if (d.r.flags & IF_UNEXPANDED) { visitShown({ino}, p); return }
    dirs++
    const kids: Array<[number, boolean, string]> = []
    dirForEach(vol, d, (child, type, name) => kids.push([child, type === DT_DIR, nameText(name)]))
    for (const [child, isDir, name] of kids) {
      if (isDir) visitDir(child, `${p}/${name}`)
      else file(vol.iget(child), true)
    }
  }
  visitDir(f.rootIno, '')
  for (const [x, privRefs] of attrs) {
    const a = vol.iget(x)
    take(a, privRefs === a.r.share && !shown.attrs.has(x))
  }
  let unique = 0
  for (const [b, n] of own) if (vol.refcount(b) === n) unique++
  return {referencedBlocks: refs.size, uniqueBlocks: unique, files, dirs}
}

/** Compares every fileset's space with the model; returns the blocks the filesets reference, summed. */
function expectModel(img: string): number {
  return withImage(img, {write: false}, (vol) => {
    const list = listFilesets(vol)
    const got = allFilesetSpace(vol, list)
    const shown = modelShown(vol)
    let blocks = 0
    for (const f of list) {
      expect(got.get(f.id), f.name).to.deep.equal(modelSpace(vol, f.id, shown))
      blocks += got.get(f.id)!.referencedBlocks
    }
    return blocks
  })
}

/**
 * What a clone still expanding reaches is what it will have: on a copy of `img`, every such
 * clone is expanded, and then each fileset has the files and directories it was counted with
 * before; a fileset that was not expanding has the same figures; and one that was, without
 * exclude patterns (whose directories are then copied whole), the same REFER. Independent of
 * the listing's own reading of unexpanded directories: it counts what expansion made.
 */
function expectExpansionKeeps(img: string): void {
  const copy = `${img}.expanded`
  fs.copyFileSync(img, copy)
  try {
    const before = withImage(copy, {write: false}, (vol) => {
      const list = listFilesets(vol)
      return {space: allFilesetSpace(vol, list), was: new Map(list.map((f) => [f.id, {expanding: f.state === FS_EXPANDING, excludes: cloneSpec(vol, f).exclude.length > 0}]))}
    })
    withImage(copy, {write: true}, (vol) => {
      for (const f of listFilesets(vol)) if (f.state === FS_EXPANDING) { expandAll(vol, filesetById(vol, f.id)!); vol.maybeCommit() }
    })
    withImage(copy, {write: false}, (vol) => {
      const list = listFilesets(vol)
      expect(list.some((f) => f.state === FS_EXPANDING)).to.equal(false)
      const after = allFilesetSpace(vol, list)
      for (const f of list) {
        const b = before.space.get(f.id)!
        const a = after.get(f.id)!
        const was = before.was.get(f.id)!
        expect({files: a.files, dirs: a.dirs}, f.name).to.deep.equal({files: b.files, dirs: b.dirs})
        if (!was.expanding) expect(a, f.name).to.deep.equal(b)
        else if (!was.excludes) expect(a.referencedBlocks, f.name).to.equal(b.referencedBlocks)
      }
    })
  } finally {
    fs.rmSync(copy, {force: true})
  }
}

describe('fileset list: the fast path and oclif print the same bytes', function () {
  this.timeout(600000)
  let dir: string
  let varied: string
  /** name -> image file: each case runs on a fresh copy at one path, so messages name the same file */
  const images: Record<string, string> = {}
  const work = () => path.join(dir, 'work', 'disk.img')

  before(() => {
    dir = tmpDir()
    fs.mkdirSync(path.join(dir, 'work'))
    fs.mkdirSync(path.join(dir, 'none-here'))
    varied = variedImage(dir)
    images.varied = varied

    images.empty = path.join(dir, 'empty.img')
    mkfs(images.empty, {size: 16 << 20}).close()

    images.nofileset = path.join(dir, 'nofileset.img')
    mkfs(images.nofileset, {size: 16 << 20}).close()
    withImage(images.nofileset, {write: true}, (vol) => deleteFileset(vol, 'root'))

    // More filesets than the fixed table holds: the rest live in the table file (§8.7).
    images.grown = path.join(dir, 'grown.img')
    mkfs(images.grown, {size: 32 << 20, filesetSlots: 16}).close()
    fillTree(images.grown)
    withImage(images.grown, {write: true}, (vol) => {
      for (let i = 0; i < 60; i++) clone(vol, {fileset: 'root', path: '/'}, {fileset: `c${i}`}, {mode: i % 3 === 0 ? 'sync' : 'lazy'})
    })

    const damaged = (name: string, change: (raw: RawImage) => void) => {
      images[name] = path.join(dir, `${name}.img`)
      fs.copyFileSync(varied, images[name])
      change(new RawImage(images[name]))
    }
    const slotOf = (name: string) => withImage(varied, {write: false}, (vol) => getFileset(vol, name).slot)
    const rootOf = (name: string) => withImage(varied, {write: false}, (vol) => getFileset(vol, name).rootIno)
    damaged('bad-record', (raw) => raw.patchFileset(slotOf('a1'), (b) => { b[0x40] ^= 0xff }, false))
    damaged('bad-clone-root', (raw) => raw.patchInode(rootOf('a1'), (b) => { b[0x30] ^= 1 }, false)) // inline: read in place
    damaged('bad-file', (raw) => raw.patchInode(raw.locate('/big/sub/data').ino, (b) => { b[0x30] ^= 1 }, false))
    damaged('bad-inline-file', (raw) => raw.patchInode(raw.locate('/small').ino, (b) => { b[0x30] ^= 1 }, false))
    damaged('bad-inline-count', (raw) => raw.patchInode(raw.locate('/big/sub', 's1').ino, (b) => { b.writeUInt32LE(500, 0x18) }))
    damaged('bad-superblock', (raw) => raw.patchBlock(0, (b) => { b[0x40] ^= 0xff }))
    images.foreign = path.join(dir, 'foreign.img')
    fs.writeFileSync(images.foreign, Buffer.alloc(1 << 20, 0x5a))
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  const FORMS = [[], ['--json'], ['--no-space'], ['--json', '--no-space'], ['--space', '--wait', '1'], ['--wait=0.5', '--json']]

  /** Runs both paths on fresh copies of `image` at one path; returns the fast path's result. */
  const both = (image: string, args: string[], cwd = path.join(dir, 'work'), sameImage = true): CliResult => {
    const results: Array<CliResult & {oclif?: boolean}> = []
    const after: string[] = []
    for (const run of [viaBin, viaOclif]) {
      fs.copyFileSync(image, work())
      results.push(run(args, cwd))
      after.push(sha256File(work()))
    }
    const [fast, oclif] = results
    const what = `fileset list ${args.join(' ')} on ${path.basename(image)}`
    expect(fast.oclif, `${what}: the fast path was taken`).to.equal(false)
    expect({status: fast.status, stderr: fast.stderr}, what).to.deep.equal({status: oclif.status, stderr: oclif.stderr})
    expect(fast.stdout === oclif.stdout, `${what}: stdout\n${fast.stdout}\n---- oclif:\n${oclif.stdout}`).to.equal(true)
    if (sameImage) expect(after[0], `${what}: the image after`).to.equal(after[1])
    return fast
  }

  it('lists every kind of fileset the same way, text and --json, with and without space', () => {
    for (const name of ['varied', 'empty', 'nofileset', 'grown']) {
      for (const form of FORMS) {
        const r = both(images[name], ['fileset', 'list', '-i', work(), ...form])
        expect(r.status, `${name} ${form.join(' ')}: ${r.stderr}`).to.equal(0)
        expect(r.stderr).to.equal('')
      }
    }
    // What the listing says, not only that both paths say it.
    const rows = JSON.parse(both(varied, ['fileset', 'list', '--json', '-i', work()]).stdout) as Row[]
    const by = Object.fromEntries(rows.map((r) => [r.name, r]))
    expect(rows.map((r) => r.name)).to.deep.equal(['root', 'blank', 's1', 's2-renamed', 'a1', 'z1', 'zz', 'sub', 'orphan', 'stray', 'zs'])
    expect(rows.map((r) => r.id)).to.deep.equal([...rows.map((r) => r.id)].sort((a, b) => a - b))
    expect([by.orphan.parent, by.stray.parent]).to.deep.equal(['root', '#999'])
    expect(by['s2-renamed'].parent).to.equal('s1')
    expect([by.a1.state, by.a1.mode, by.z1.state, by.z1.mode]).to.deep.equal(['expanding', 'async', 'expanding', 'lazy'])
    expect(by.a1.expansion).to.deep.equal({done: 0, known: 1})
    expect(by.z1.expansion!.done).to.be.greaterThan(0) // the path read was expanded
    expect([by.s1.state, by.s1.mode, by.blank.mode]).to.deep.equal(['active', 'sync', null])
    expect(by.root.referenced).to.be.greaterThan(300_000 + 30 * 4096)
    expect(by.blank).to.include({referenced: 0, unique: 0, files: 0, dirs: 1})
    // Not expanded yet: it reaches root's whole tree (as `ls` shows it), none of it its alone;
    // and root's files are not root's alone while clones still expanding show them.
    expect(by.a1).to.include({referenced: by.root.referenced, unique: 0, files: by.root.files, dirs: by.root.dirs})
    expect(by.stray).to.include({referenced: by.root.referenced, unique: 0, files: by.root.files, dirs: by.root.dirs})
    expect(by.z1).to.include({files: by.root.files, dirs: by.root.dirs})
    expect(by.zz).to.include({files: by.root.files, dirs: by.root.dirs})
    expect(by.zs).to.include({referenced: by.s1.referenced, unique: 0, files: by.s1.files, dirs: by.s1.dirs})
    expect(by.root.unique).to.be.below(by.root.referenced! / 4)
    // What s1 wrote after s2 was made would be its own, but zs, a lazy clone of it still
    // expanding, shows it: deleting s1 would expand zs first, which keeps it.
    expect(by.s1.unique).to.be.below(24_000)
    expect(by.s1.unique).to.be.below(by.s1.referenced!)
    const text = both(varied, ['fileset', 'list', '-i', work()]).stdout.split('\n')
    expect(text[0]).to.match(/^NAME +PARENT +CREATED +STATE +REFER +UNIQUE +COAW$/)
    expect(text).to.have.length(rows.length + 2) // the head, a row each, the final newline
    for (const [i, r] of rows.entries()) expect(text[i + 1].split(/ +/)[0]).to.equal(r.name)
    const bare = JSON.parse(both(varied, ['fileset', 'list', '--json', '--no-space', '-i', work()]).stdout) as Row[]
    expect(bare.every((r) => r.referenced === undefined && r.coaw !== undefined)).to.equal(true)
    expect(JSON.parse(both(images.nofileset, ['fileset', 'list', '--json', '-i', work()]).stdout)).to.deep.equal([])
    expect(both(images.grown, ['fileset', 'list', '--no-space', '-i', work()]).stdout.split('\n')).to.have.length(61 + 2)
  })

  it('-o chooses the columns, -H prints them for scripts, -p exactly; only the space columns walk the filesets', () => {
    const full = JSON.parse(both(varied, ['fileset', 'list', '--json', '-i', work()]).stdout) as FilesetRow[]
    // (the forms below that list() runs again are checked there, on both paths too)
    const forms = [['--output=all', '-p'], ['-o', 'all', '-H', '-p'], ['-o', 'name,state', '--json']]
    for (const name of ['varied', 'empty', 'nofileset', 'grown']) {
      for (const form of name === 'varied' ? forms : forms.slice(0, 1)) {
        const r = both(images[name], ['fileset', 'list', '-i', work(), ...form])
        expect([r.status, r.stderr], `${name} ${form.join(' ')}`).to.deep.equal([0, ''])
      }
    }
    // (the fast path alone from here: the forms above compared both paths)
    const list = (...args: string[]) => {
      fs.copyFileSync(varied, work())
      const r = viaBin(['fileset', 'list', '-i', work(), ...args], path.join(dir, 'work'))
      expect([r.status, r.stderr, r.oclif], args.join(' ')).to.deep.equal([0, '', false])
      return r.stdout
    }
    // The columns named, in that order, a shorthand expanded where it stands, each column once.
    const space = list('-o', 'space').split('\n')
    expect(space[0]).to.match(/^NAME +REFER +UNIQUE +COAW$/)
    expect(list('-o', 'name,name,space').split('\n')[0]).to.match(/^NAME +REFER +UNIQUE +COAW$/)
    expect(list('-o', 'SPACE,id').split('\n')[0]).to.match(/^NAME +REFER +UNIQUE +COAW +ID$/)
    expect(list('-o', 'state,name').split('\n')[0]).to.match(/^STATE +NAME$/)
    expect(list('-o', 'all').split('\n')[0]).to.match(/^NAME +ID +PARENT +CREATED +STATE +MODE +REFER +UNIQUE +FILES +DIRS +COAW +REWRITES +LOCALITY$/)
    // -H: no head, the fields joined by one tab; -p: sizes in bytes, CREATED in seconds.
    expect(list('-H', '-o', 'name,id,mode')).to.equal(full.map((r) => `${r.name}\t${r.id}\t${r.mode ?? '-'}\n`).join(''))
    const exact = list('-H', '-p', '-o', 'name,created,refer,unique,files,dirs,coaw,rewrites').split('\n').slice(0, -1).map((l) => l.split('\t'))
    expect(exact).to.deep.equal(full.map((r) => [r.name, String(Math.floor(Date.parse(r.created) / 1000)), String(r.referenced), String(r.unique), String(r.files), String(r.dirs),
      String(r.coaw.copiedBytes), String(r.coaw.rewrites)]))
    expect(list('-H', '-o', 'name').split('\n')).to.have.length(full.length + 1)
    // Without -p, the same sizes as the default table.
    const dflt = list().split('\n').slice(1, -1).map((l) => l.split(/ {2,}/))
    const viaO = space.slice(1, -1).map((l) => l.trim().split(/ {2,}/))
    expect(viaO).to.deep.equal(dflt.map((c) => [c[0], c[4], c[5], c[6]]))
    // --json with -o: the keys of the columns named, in their order; nothing else.
    const picked = JSON.parse(list('--json', '-o', 'refer,name,coaw')) as Array<Record<string, unknown>>
    expect(picked).to.deep.equal(full.map((r) => ({referenced: r.referenced, name: r.name, coaw: r.coaw})))
    expect(Object.keys(picked[0])).to.deep.equal(['referenced', 'name', 'coaw'])
    const states = JSON.parse(list('--json', '-o', 'name,state')) as Array<Record<string, unknown>>
    expect(states).to.deep.equal(full.map((r) => r.expansion ? {name: r.name, state: r.state, expansion: r.expansion} : {name: r.name, state: r.state}))
    // A damaged tree: columns that need no walk list it all (exit 0, nothing on stderr); a
    // space column walks, and says which fileset it could not count.
    for (const cols of ['name,state,mode,coaw,rewrites,locality', 'name,id,parent,created']) {
      const r = both(images['bad-file'], ['fileset', 'list', '-o', cols, '-i', work()])
      expect([r.status, r.stderr], cols).to.deep.equal([0, ''])
    }
    for (const cols of ['name,refer', 'unique', 'files', 'dirs', 'space']) {
      fs.copyFileSync(images['bad-file'], work())
      const r = cols === 'space' ? both(images['bad-file'], ['fileset', 'list', '-o', cols, '-i', work()]) : viaBin(['fileset', 'list', '-o', cols, '-i', work()], path.join(dir, 'work'))
      expect(r.status, cols).to.equal(1)
      expect(r.stderr, cols).to.match(/^prism: fileset '[^']+': REFER and UNIQUE cannot be counted: /)
    }
  })

  it('fails the same way on damaged, foreign, missing and locked images, and when no image is found', async () => {
    const cases: Array<[string, number, RegExp]> = [
      ['bad-record', 5, /fileset slot \d+: fileset record checksum mismatch; run 'prism fsck --repair'/],
      ['foreign', 5, /./],
    ]
    // Damage in a fileset's tree: every fileset is listed, REFER and UNIQUE of each one whose
    // walk meets it are '?' (absent in --json), a line each says why, exit 1.
    const walks: Array<[string, RegExp]> = [
      ['bad-clone-root', /inode \d+: inode checksum mismatch; run 'prism fsck'/],
      ['bad-file', /inode \d+: inode checksum mismatch; run 'prism fsck'/],
      ['bad-inline-file', /inode \d+: inode checksum mismatch; run 'prism fsck'/],
      // (read in place by s1's walk; listed by zs's, a lazy clone of s1 that shows it)
      ['bad-inline-count', /directory inode \d+(?: has a damaged entry|: directory entry name length invalid); run 'prism fsck'/],
    ]
    for (const [name, line] of walks) {
      for (const form of [[], ['--json']]) {
        const r = both(images[name], ['fileset', 'list', '-i', work(), ...form])
        expect(r.status, `${name}: ${r.stderr}`).to.equal(1)
        const lines = r.stderr.trim().split('\n')
        for (const l of lines) expect(l, name).to.match(new RegExp(`^prism: fileset '[^']+': REFER and UNIQUE cannot be counted: .*${line.source}`))
        const damaged = lines.map((l) => /^prism: fileset '([^']+)'/.exec(l)![1])
        if (form.length) {
          const rows = JSON.parse(r.stdout) as FilesetRow[]
          for (const row of rows) expect(row.referenced === undefined, `${name}: ${row.name}`).to.equal(damaged.includes(row.name))
        } else {
          for (const d of damaged) expect(r.stdout, name).to.match(new RegExp(`^${d} .* \\? +\\? `, 'm'))
        }
      }
    }
    for (const [name, status, line] of cases) {
      for (const form of [[], ['--json']]) {
        const r = both(images[name], ['fileset', 'list', '-i', work(), ...form])
        expect(r.status, `${name}: ${r.stderr}`).to.equal(status)
        expect(r.stderr.split('\n'), name).to.have.length(2) // one line
        expect(r.stderr, name).to.match(new RegExp(`^prism: .*${line.source}`))
        if (form.length) expect(JSON.parse(r.stdout).error.code, name).to.equal('EBADIMAGE')
        else expect(r.stdout, name).to.equal('')
      }
    }
    // Damage the walk never reaches: --no-space still lists.
    for (const name of ['bad-clone-root', 'bad-file', 'bad-inline-file', 'bad-inline-count']) {
      expect(both(images[name], ['fileset', 'list', '--no-space', '-i', work()]).status, name).to.equal(0)
    }
    // The primary superblock damaged: the backup is used, said in a notice, and the list printed.
    // (Its clones still expanding have it opened for writing, which rewrites the primary with
    // the time of the open: the two runs' images differ in that.)
    const sb = both(images['bad-superblock'], ['fileset', 'list', '-i', work()], path.join(dir, 'work'), false)
    expect(sb.status).to.equal(0)
    expect(sb.stderr).to.match(/^prism: primary superblock damaged \(.*\); using the backup copy\n$/)
    // A missing image, none in the directory, and a locked one.
    const missing = both(images.empty, ['fileset', 'list', '-i', path.join(dir, 'missing.img')])
    expect([missing.status, missing.stderr]).to.deep.equal([1, `prism: ${path.join(dir, 'missing.img')}: no such image file\n`])
    const none = both(images.empty, ['fileset', 'list', '--json'], path.join(dir, 'none-here'))
    expect(none.status).to.equal(2)
    expect(JSON.parse(none.stdout).error.code).to.equal('ENOIMAGE')
    for (const form of [[], ['--json']]) {
      fs.copyFileSync(images.empty, work())
      const lock = await holdImageLock(work())
      try {
        const fast = viaBin(['fileset', 'list', '-i', work(), '--wait', '0.2', ...form], path.join(dir, 'work'))
        const oclif = viaOclif(['fileset', 'list', '-i', work(), '--wait', '0.2', ...form], path.join(dir, 'work'))
        expect(fast.oclif).to.equal(false)
        expect({status: fast.status, stdout: fast.stdout, stderr: fast.stderr}).to.deep.equal({status: oclif.status, stdout: oclif.stdout, stderr: oclif.stderr})
        expect(fast.status).to.equal(3)
        expect(fast.stderr).to.match(/^prism: .* is locked by another prism process \(waited 0\.2s/)
      } finally {
        await lock.release()
      }
    }
  })

  it('leaves --help, unknown, repeated and malformed flags to oclif', () => {
    const cwd = path.join(dir, 'work')
    fs.copyFileSync(images.empty, work())
    const forms = [['--help'], ['-h'], ['--bogus'], ['--json', '--json'], ['--space', '--no-space'], ['--wait', 'x'], ['-i'], ['extra'], ['--json=1'], ['--', '--json'], ['-i' + work()],
      ['-o'], ['-o', 'bogus'], ['-o', ''], ['-o', 'name,,id'], ['-o', 'constructor'], ['-o', 'space', '--no-space'], ['--space', '-o', 'name'], ['-o', 'name', '-o', 'id'], ['-H', '-H'], ['-Hp'], ['-H=1']]
    for (const args of forms) {
      const r = viaBin(['fileset', 'list', '-i', work(), ...args], cwd)
      expect(r.oclif, args.join(' ')).to.equal(true)
      const o = viaOclif(['fileset', 'list', '-i', work(), ...args], cwd)
      expect({status: r.status, stdout: r.stdout, stderr: r.stderr}, args.join(' ')).to.deep.equal({status: o.status, stdout: o.stdout, stderr: o.stderr})
    }
    for (const args of [['--bogus'], ['--wait', 'x'], ['extra'], ['-o', 'bogus'], ['-o', ''], ['-o', 'space', '--no-space'], ['-o', 'name', '-o', 'id']]) {
      const r = viaBin(['fileset', 'list', '-i', work(), ...args], cwd)
      expect(r.status, args.join(' ')).to.equal(2)
      expect(r.stderr, args.join(' ')).to.match(/^prism: [^\n]*\(see 'prism fileset list --help'\)\n$/)
    }
    // $PRISM_CONTENT_TYPE=json asks oclif for --json: the fast path does the same.
    const r = spawnSync(process.execPath, [BIN, 'fileset', 'list', '-i', work()], {cwd, env: {...ENV, PRISM_CONTENT_TYPE: 'json'}})
    expect(JSON.parse(r.stdout.toString())[0].name).to.equal('root')
  })

  it('walks a hashed directory in place, its buckets read uncached: the figures, and the lines for a damaged bucket, of the walk through cached inodes', () => {
    const bigIno = withImage(varied, {write: false}, (vol) => namespace(vol, 'root').resolve('/big').ino)
    // (root's and s1's /big are listed too, as the clones still expanding show them: s2's is its alone)
    const s1BigIno = withImage(varied, {write: false}, (vol) => namespace(vol, 's2-renamed').resolve('/big').ino)
    const inodesOf = (vol: Volume) => (vol as unknown as {inodes: Map<number, Inode>}).inodes
    const inPlace = withImage(varied, {write: false}, (vol) => {
      const got = allFilesetSpace(vol, listFilesets(vol))
      expect(inodesOf(vol).has(s1BigIno), 'the hashed directory was read in place, no Inode built').to.equal(false)
      return got
    })
    // The same walk with every directory's inode loaded first: the walk then takes each
    // through iget and its buckets through the block cache, as it did before.
    const cached = withImage(varied, {write: false}, (vol) => {
      const list = listFilesets(vol)
      const load = (ino: number) => dirForEach(vol, vol.iget(ino), (child, type) => { if (type === DT_DIR) load(child) })
      for (const f of list) load(f.rootIno)
      expect(inodesOf(vol).has(s1BigIno)).to.equal(true)
      return allFilesetSpace(vol, list)
    })
    expect([...cached].sort((a, b) => a[0] - b[0])).to.deep.equal([...inPlace].sort((a, b) => a[0] - b[0]))
    expect(inPlace.get(1)!.dirs).to.be.greaterThan(2)

    // A bucket of root's /big damaged: root's figures are not given, and it is named.
    const d = tmpDir()
    try {
      const img = path.join(d, 'bad-bucket.img')
      fs.copyFileSync(varied, img)
      const bucket = withImage(img, {write: false}, (vol) => loadExtents(vol, vol.iget(bigIno)).toArray()[0].p)
      const fd = fs.openSync(img, 'r+')
      fs.writeSync(fd, Buffer.from([0xff]), 0, 1, bucket * 4096 + 3000)
      fs.closeSync(fd)
      // The same image walked through cached inodes (bucket reads as dirForEachRaw does them):
      // the same filesets left out, each with the same line.
      const walkDamaged = (loadFirst: boolean) => withImage(img, {write: false}, (vol) => {
        const list = listFilesets(vol)
        if (loadFirst) for (const f of list) vol.iget(f.rootIno)
        if (loadFirst) vol.iget(bigIno)
        const damaged = new Map<string, string>()
        const got = allFilesetSpace(vol, list, (f, e) => damaged.set(f.name, e.message))
        return {got: [...got].sort((a, b) => a[0] - b[0]), damaged: [...damaged].sort()}
      })
      const inPlaceDamaged = walkDamaged(false)
      expect(inPlaceDamaged).to.deep.equal(walkDamaged(true))
      expect(Object.fromEntries(inPlaceDamaged.damaged).root).to.match(/^directory inode \d+ bucket 0 checksum mismatch; run 'prism fsck'$/)
      const counted = new Map(inPlaceDamaged.got)
      expect(counted.has(1)).to.equal(false)
      // A sync clone has its own copy of the directory: counted as before.
      const s1 = withImage(img, {write: false}, (vol) => getFileset(vol, 's1').id)
      expect(counted.get(s1)).to.deep.equal(inPlace.get(s1))
    } finally {
      fs.rmSync(d, {recursive: true, force: true})
    }
  })

  it('a directory loop in the tree a lazy clone shows is damage, named, not a walk without end', () => {
    const d = tmpDir()
    try {
      const img = path.join(d, 'loop.img')
      mkfs(img, {size: 16 << 20}).close()
      withImage(img, {write: true}, (vol) => {
        const ns = namespace(vol, 'root')
        ns.mkdir('/a/b', {parents: true})
        ns.writeFile('/a/b/f', Buffer.alloc(5000, 1))
        clone(vol, {fileset: 'root', path: '/'}, {fileset: 'lz'}, {mode: 'lazy'})
      })
      const raw = new RawImage(img)
      const a = raw.locate('/a').ino
      raw.rewriteInlineEntry(a, 'b', (e) => { e.ino = a }) // /a/b is /a again
      // (a walk that went round would never end: the time limit makes it a failure)
      const run = spawnSync(process.execPath, [BIN, 'fileset', 'list', '-i', img, '--json'], {cwd: d, env: ENV, timeout: 60_000})
      expect(run.signal, 'the listing ended').to.equal(null)
      const r = {status: run.status, stdout: run.stdout.toString(), stderr: run.stderr.toString()}
      const rows = JSON.parse(r.stdout) as FilesetRow[]
      expect(rows.map((x) => x.name)).to.deep.equal(['root', 'lz'])
      expect(r.status, r.stderr).to.be.oneOf([0, 1])
      expect(r.stderr.split('\n').filter((l) => l !== '').every((l) => /^prism: fileset '(root|lz)': /.test(l)), r.stderr).to.equal(true)
    } finally {
      fs.rmSync(d, {recursive: true, force: true})
    }
  })

  it('reports the space a plain model of REFER and UNIQUE gives, on a varied image and on random ones', () => {
    expect(expectModel(varied)).to.be.greaterThan(500)
    expect(expectModel(images.grown)).to.be.greaterThan(500)
    expectExpansionKeeps(varied)
    expectExpansionKeeps(images.grown)
    let compared = 0
    fc.assert(fc.property(fc.array(fc.tuple(fc.integer({min: 0, max: 12}), fc.nat(5), fc.nat(3)), {minLength: 1, maxLength: 16}), (ops) => {
      const d = tmpDir()
      try {
        const img = path.join(d, 'r.img')
        mkfs(img, {size: 16 << 20}).close()
        withImage(img, {write: true}, (vol) => {
          const names = ['root']
          for (const [op, a, b] of ops) {
            const fsName = names[a % names.length]
            const ns = namespace(vol, fsName)
            const file = `/f${b}`
            if (op === 0) names.push(clone(vol, {fileset: fsName, path: '/'}, {fileset: `c${names.length}`}, {mode: (['sync', 'lazy', 'async'] as const)[b % 3]}).fileset)
            // A clone leaving a directory out (what its unexpanded directories show depends on the path).
            else if (op === 10) names.push(clone(vol, {fileset: fsName, path: '/'}, {fileset: `c${names.length}`}, {mode: b % 2 ? 'lazy' : 'async', exclude: [`/d${a % 3}`]}).fileset)
            // A name in a subdirectory for a file at the top: a clone may expand one name and not the other.
            else if (op === 11 && ns.exists(file) && ns.exists(`/d${a % 3}`) && !ns.exists(`/d${a % 3}/l${b}`)) ns.link(file, `/d${a % 3}/l${b}`)
            // A read: in a clone still expanding, expands the directories along the path.
            else if (op === 12 && ns.exists(`/d${b}/g`)) ns.readFile(`/d${b}/g`)
            else if (op === 1) ns.writeFile(file, Buffer.alloc(5000 * (b + 1), a + 1))
            else if (op === 2) ns.writeFile(file, Buffer.from(`inline ${a}`))
            else if (op === 3) { ns.mkdir(`/d${b}`, {parents: true}); ns.writeFile(`/d${b}/g`, Buffer.alloc(9000, b)) }
            else if (op === 4 && ns.exists(file) && !ns.exists(`/h${b}`)) ns.link(file, `/h${b}`)
            else if (op === 5 && ns.exists(file)) ns.setXattr(file, Buffer.from('user.a'), Buffer.alloc(200 + 1500 * b, 1))
            else if (op === 6 && ns.exists(file)) ns.unlink(file)
            else if (op === 7 && names.length > 1 && b === 0) { deleteFileset(vol, names[names.length - 1]); names.pop() }
            else if (op === 8 && ns.exists(file) && ns.stat(file).size > 4096) {
              // A write into part of a file: a clone's private copy then shares the other blocks
              // (with the locality policy off for it; on, the region is copied whole).
              if (a % 2) ns.setLocality(file, LOCALITY_OFF)
              ns.writeInode(ns.openForWrite(file), 4096 * (a % 2), Buffer.alloc(100, 9))
            } else if (op === 9 && ns.exists(`/d${b}`) && !ns.exists(`/g${a}`)) {
              // A graft: new inodes in the same fileset sharing the blocks (both references its own).
              clone(vol, {fileset: fsName, path: `/d${b}`}, {fileset: fsName, path: `/g${a}`})
            }
            vol.maybeCommit()
          }
        })
        compared += expectModel(img)
        expectExpansionKeeps(img)
      } finally {
        fs.rmSync(d, {recursive: true, force: true})
      }
    }), {numRuns: Number(process.env.PRISM_LIST_RUNS ?? 40)})
    expect(compared).to.be.greaterThan(25) // the random images held data
  })
})
