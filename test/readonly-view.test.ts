// Property test (issue 15, point 5): a reader who may not write the image sees a clone that is
// still expanding exactly as expansion makes it. Random trees (files, hard links, symlinks
// relative, absolute, dangling and looping, noclone marks), random async and lazy clones of
// them (with excludes, of subtrees, of clones still expanding), random changes afterwards
// (which expand the clones along their paths first), background slices and writable reads,
// then random reads (ls -l and -R, stat with and without following, cat, a walk of the whole
// tree, diff, cp -r out to the host, scan) through an image opened read-only on a device
// that refuses every write. The same reads must show:
//   - after a real expansion of every clone, the same contents, names, types, modes, owners,
//     times, sizes, directory link counts and flags (inode numbers, generations and share
//     counts differ by nature, and a hard-linked file's link count is corrected only when
//     its clone's expansion ends: README, clone --mode);
//   - on a writable open that expands on demand as it reads, in one session, everything but
//     inode numbers and generations (share and link counts, space, expansion progress too).
// The view is read in several sessions (the image closed and opened again in between: what
// one session expanded in memory is gone in the next). Nothing is ever written to the image.
// PRISM_VIEW_RUNS sets the runs (default 100); PRISM_VIEW_SEED and PRISM_VIEW_PATH replay a
// failure from the seed and path fast-check printed.
import fs from 'node:fs'
import path from 'node:path'
import {createHash} from 'node:crypto'
import {expect} from 'chai'
import fc from 'fast-check'
import {clone} from '../src/clone/clone.js'
import {Expander, expandAll, expansionStatus} from '../src/fs/expand.js'
import {diff} from '../src/diff/diff.js'
import {PrismError} from '../src/errors.js'
import {FS_EXPANDING, IF_NOCLONE} from '../src/format/constants.js'
import {getFileset, listFilesets} from '../src/fs/filesets.js'
import {namespace} from '../src/fs/image.js'
import type {Namespace, StatInfo} from '../src/fs/namespace.js'
import {filesetSpace} from '../src/fs/space.js'
import {Volume} from '../src/fs/volume.js'
import {MemDevice} from '../src/device/mem.js'
import {copy} from '../src/ops/copy.js'
import {scan, type ScanEngine} from '../src/scan/scan.js'
import {loadSignatures} from '../src/scan/signatures.js'
import {ImageView} from './crash-lib.js'
import {memImage, w} from './fsops.js'
import {tmpDir} from './helpers.js'

const SIG = Buffer.from('PRISM-VIEW-SIGNATURE')
const comp = fc.constantFrom('a', 'b', 'c')
const pathArb = fc.array(comp, {minLength: 1, maxLength: 3}).map((c) => '/' + c.join('/'))
/** Paths to read: through '.', '..' and symlinks too. */
const readPathArb = fc.array(fc.constantFrom('a', 'b', 'c', 'c', '..', '.', 'l'), {maxLength: 4}).map((c) => '/' + c.join('/'))
const targetArb = fc.constantFrom('a', 'b/c', '../a', '../../b', '..', '.', '/a', '/b/c', '/', '/nowhere', 'l', '/a/l', 'c/../a')
const dataArb = fc.oneof(
  fc.uint8Array({maxLength: 30}).map((u) => Buffer.from(u)),
  fc.integer({min: 100, max: 9000}).map((n) => Buffer.alloc(n, n % 251)),
  fc.nat(20).map((n) => Buffer.concat([Buffer.alloc(n, 1), SIG])),
)

type Build =
  | {op: 'mkdir', p: string} | {op: 'write', p: string, data: Buffer} | {op: 'symlink', t: string, p: string}
  | {op: 'link', a: string, b: string} | {op: 'chmod', p: string, perm: number} | {op: 'noclone', p: string}
  | {op: 'rmr', p: string} | {op: 'rename', a: string, b: string}

const buildArb: fc.Arbitrary<Build> = fc.oneof(
  w(5, pathArb.map((p) => ({op: 'mkdir', p}) as Build)),
  w(5, fc.tuple(pathArb, dataArb).map(([p, data]) => ({op: 'write', p, data}) as Build)),
  w(2, fc.tuple(targetArb, fc.oneof(pathArb, pathArb.map((p) => p.replace(/[^/]+$/, 'l')))).map(([t, p]) => ({op: 'symlink', t, p}) as Build)),
  w(2, fc.tuple(pathArb, pathArb).map(([a, b]) => ({op: 'link', a, b}) as Build)),
  w(1, fc.tuple(pathArb, fc.constantFrom(0o700, 0o640, 0o1777)).map(([p, perm]) => ({op: 'chmod', p, perm}) as Build)),
  w(1, pathArb.map((p) => ({op: 'noclone', p}) as Build)),
  w(1, pathArb.map((p) => ({op: 'rmr', p}) as Build)),
  w(1, fc.tuple(pathArb, pathArb).map(([a, b]) => ({op: 'rename', a, b}) as Build)),
)

type World =
  | {kind: 'op', target: number, op: Build}
  | {kind: 'clone', src: number, sub: string, mode: 'async' | 'lazy', exclude: string[]}
  | {kind: 'slice', target: number, dirs: number}
  | {kind: 'read', target: number, p: string}

const worldArb: fc.Arbitrary<World> = fc.oneof(
  w(4, fc.tuple(fc.nat(5), buildArb).map(([target, op]) => ({kind: 'op', target, op}) as World)),
  w(4, fc.record({
    src: fc.nat(5),
    sub: fc.oneof(fc.constant('/'), pathArb),
    mode: fc.constantFrom('async' as const, 'lazy' as const),
    exclude: fc.array(fc.constantFrom('c', '/a', 'b/c', '/b/a', '**/b', 'a/*', '*'), {maxLength: 2}),
  }).map((c) => ({kind: 'clone', ...c}) as World)),
  w(1, fc.record({target: fc.nat(5), dirs: fc.integer({min: 1, max: 3})}).map((s) => ({kind: 'slice', ...s}) as World)),
  w(1, fc.tuple(fc.nat(5), readPathArb).map(([target, p]) => ({kind: 'read', target, p}) as World)),
)

type Read =
  | {kind: 'ls', target: number, p: string} | {kind: 'lsR', target: number, p: string}
  | {kind: 'stat', target: number, p: string, follow: boolean} | {kind: 'cat', target: number, p: string}
  | {kind: 'walk', target: number} | {kind: 'diff', a: number, b: number, p: string}
  | {kind: 'export', target: number, p: string} | {kind: 'scan', targets: number[]}

const readArb: fc.Arbitrary<Read> = fc.oneof(
  w(3, fc.tuple(fc.nat(5), readPathArb).map(([target, p]) => ({kind: 'ls', target, p}) as Read)),
  w(1, fc.tuple(fc.nat(5), readPathArb).map(([target, p]) => ({kind: 'lsR', target, p}) as Read)),
  w(3, fc.tuple(fc.nat(5), readPathArb, fc.boolean()).map(([target, p, follow]) => ({kind: 'stat', target, p, follow}) as Read)),
  w(2, fc.tuple(fc.nat(5), readPathArb).map(([target, p]) => ({kind: 'cat', target, p}) as Read)),
  w(1, fc.nat(5).map((target) => ({kind: 'walk', target}) as Read)),
  w(1, fc.tuple(fc.nat(5), fc.nat(5), fc.oneof(fc.constant('/'), pathArb)).map(([a, b, p]) => ({kind: 'diff', a, b, p}) as Read)),
  w(1, fc.tuple(fc.nat(5), fc.oneof(fc.constant('/'), pathArb)).map(([target, p]) => ({kind: 'export', target, p}) as Read)),
  w(1, fc.array(fc.nat(5), {minLength: 1, maxLength: 2}).map((targets) => ({kind: 'scan', targets}) as Read)),
)

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex').slice(0, 16)

/** What a read shows. `loose`: leave out what a full expansion changes by nature (see the top). */
function fmt(st: StatInfo, loose: boolean): string {
  const t = (x: {s: number, ns: number}) => `${x.s}.${x.ns}`
  const parts = [st.type, st.perm.toString(8), `${st.uid}:${st.gid}`, `size=${st.size}`, `blocks=${st.blocks}`,
    `a=${t(st.atime)}`, `m=${t(st.mtime)}`, `c=${t(st.ctime)}`, `flags=${st.flags.join(',')}`]
  if (!loose || st.type === 'dir') parts.push(`nlink=${st.nlink}`)
  if (!loose) parts.push(`share=${st.share}`)
  if (st.target !== undefined) parts.push(`-> ${st.target}`)
  if (st.entries !== undefined) parts.push(`entries=${st.entries}`)
  return parts.join(' ')
}

/** Runs `fn`; an error about the path (not the image) is part of what the read shows. */
function shown(fn: () => unknown): unknown {
  try {
    return fn()
  } catch (e) {
    if (e instanceof PrismError && e.exitCode === 1) return `error ${e.code}`
    throw e
  }
}

function listing(ns: Namespace, p: string, loose: boolean, recursive: boolean): string[] {
  const out: string[] = []
  const walk = (dir: string) => {
    for (const e of ns.readdirStat(dir)) {
      const q = (dir.endsWith('/') ? dir : dir + '/') + e.name
      out.push(`${q} ${fmt(e.st, loose)}${e.st.type === 'file' ? ' ' + sha(ns.readFile(q)) : ''}`)
      if (recursive && e.type === 'dir') walk(q)
    }
  }
  walk(p)
  return out
}

/** The host tree an export made: what cp -r out wrote. */
function hostTree(top: string): string[] {
  const out: string[] = []
  const walk = (p: string, rel: string) => {
    const st = fs.lstatSync(p)
    const head = `${rel || '.'} ${st.mode.toString(8)} ${st.uid}:${st.gid} nlink=${st.nlink} m=${Math.round(st.mtimeMs * 1000)}`
    if (st.isDirectory()) {
      out.push(head)
      for (const n of fs.readdirSync(p).sort()) walk(path.join(p, n), rel + '/' + n)
    } else if (st.isSymbolicLink()) out.push(`${head} -> ${fs.readlinkSync(p)}`)
    else out.push(`${head} size=${st.size} ${sha(fs.readFileSync(p))}`)
  }
  walk(top, '')
  return out
}

interface Ctx {
  names: string[]
  engine: ScanEngine
  host: string
  n: number
  /** read-only sessions that expanded something in memory */
  inMemory: number
}

async function doRead(vol: Volume, r: Read, loose: boolean, ctx: Ctx): Promise<unknown> {
  const name = (i: number) => ctx.names[i % ctx.names.length]
  switch (r.kind) {
    case 'ls': return shown(() => listing(namespace(vol, name(r.target)), r.p, loose, false))
    case 'lsR': return shown(() => listing(namespace(vol, name(r.target)), r.p, loose, true))
    case 'stat': return shown(() => fmt(namespace(vol, name(r.target)).stat(r.p, r.follow), loose))
    case 'cat': return shown(() => sha(namespace(vol, name(r.target)).readFile(r.p)))
    case 'walk': {
      const ns = namespace(vol, name(r.target))
      return [fmt(ns.stat('/'), loose), ...listing(ns, '/', loose, true)]
    }
    case 'diff': return shown(() => diff(vol, {fileset: name(r.a), path: r.p}, {fileset: name(r.b), path: r.p}).entries)
    case 'export': {
      const out = path.join(ctx.host, `x${ctx.n++}`)
      const res = shown(() => copy(vol, [{kind: 'image', fileset: name(r.target), path: r.p}], {kind: 'host', path: out}, {recursive: true}))
      const tree = fs.existsSync(out) ? hostTree(out) : []
      fs.rmSync(out, {recursive: true, force: true})
      return [typeof res === 'string' ? res : 'ok', tree]
    }
    case 'scan': {
      const res = await scan(vol, [...new Set(r.targets.map(name))], ctx.engine)
      return res.matches.map((m) => `${m.found.join(',')}: ${m.paths.join(' ')}`).sort()
    }
  }
}

/** What expansion has done so far, and the space each fileset takes (the writable comparison only). */
function progress(vol: Volume): unknown {
  return [
    expansionStatus(vol).map((s) => `${s.fileset} ${s.done}/${s.known}`),
    listFilesets(vol).map((f) => `${f.name} ${f.state} ${JSON.stringify(filesetSpace(vol, f))}`),
  ]
}

function applyBuild(ns: Namespace, o: Build): void {
  try {
    switch (o.op) {
      case 'mkdir': ns.mkdir(o.p); break
      case 'write': ns.writeFile(o.p, o.data); break
      case 'symlink': ns.symlink(o.t, o.p); break
      case 'link': ns.link(o.a, o.b); break
      case 'chmod': ns.chmod(o.p, o.perm); break
      case 'noclone': ns.setFlag(o.p, IF_NOCLONE, true); break
      case 'rmr': ns.remove(o.p, {recursive: true}); break
      case 'rename': ns.rename(o.a, o.b); break
    }
    ns.vol.commit()
  } catch (e) {
    if (!(e instanceof PrismError) || e.code === 'EBADIMAGE') throw e
    ns.vol.abort()
  }
}

/** Builds the image: a tree in root, then clones, changes, slices and writable reads. */
function buildWorld(tree: Build[], world: World[]): {image: Buffer, names: string[], expanding: number} {
  const dev = memImage(4096)
  let vol = Volume.openDevice(dev, {write: true})
  const names = ['root']
  let next = 1
  try {
    for (const o of tree) applyBuild(namespace(vol, 'root'), o)
    for (const s of world) {
      const pick = (i: number) => names[i % names.length]
      if (s.kind === 'op') applyBuild(namespace(vol, pick(s.target)), s.op)
      else if (s.kind === 'clone') {
        try {
          const name = `f${next}`
          clone(vol, {fileset: pick(s.src), path: s.sub}, {fileset: name}, {mode: s.mode, exclude: s.exclude})
          vol.commit()
          names.push(name)
          next++
        } catch (e) {
          if (!(e instanceof PrismError) || e.code === 'EBADIMAGE') throw e
          vol.abort()
        }
      } else if (s.kind === 'slice') {
        const expanding = listFilesets(vol).filter((f) => f.state === FS_EXPANDING)
        if (expanding.length === 0) continue
        new Expander(expanding[s.target % expanding.length].id).slice(vol, 60_000, s.dirs)
        vol.commit()
      } else {
        shown(() => namespace(vol, pick(s.target)).stat(s.p, true))
        vol.commit()
      }
    }
    const expanding = listFilesets(vol).filter((f) => f.state === FS_EXPANDING).length
    vol.close()
    return {image: Buffer.from(dev.durable), names, expanding}
  } catch (e) {
    vol.closeAbort()
    throw e
  }
}

/** Runs the reads on a read-only open of `image`, closing and opening it again where a session ends. */
async function readView(image: Buffer, reads: Array<{r: Read, fresh: boolean}>, loose: boolean, ctx: Ctx, withProgress: boolean): Promise<unknown[]> {
  const dev = new ImageView(image)
  const before = sha(image)
  let vol = Volume.openDevice(dev, {write: false})
  const out: unknown[] = []
  try {
    for (const {r, fresh} of reads) {
      if (fresh) {
        if (vol.hasChanges) ctx.inMemory++
        vol.close()
        vol = Volume.openDevice(dev, {write: false})
      }
      out.push(await doRead(vol, r, loose, ctx))
      if (withProgress) out.push(progress(vol))
    }
  } finally {
    if (vol.hasChanges) ctx.inMemory++
    vol.close()
  }
  expect(dev.writes, 'writes to the image by read-only opens').to.equal(0)
  expect(sha(image), 'the image after read-only opens').to.equal(before)
  return out
}

describe('read-only view of clones still expanding (issue 15, point 5)', function () {
  this.timeout(1_800_000)
  const runs = Number(process.env.PRISM_VIEW_RUNS ?? 100)
  let host: string
  let engine: ScanEngine

  before(() => {
    host = tmpDir('prism-view-')
    const sigs = path.join(host, 'view.ndb')
    fs.writeFileSync(sigs, `Prism.View.Test:0:*:${SIG.toString('hex')}\n`)
    engine = {kind: 'signatures', set: loadSignatures([sigs])}
  })
  after(() => fs.rmSync(host, {recursive: true, force: true}))

  it(`shows what expansion makes, without writing, over ${runs} random images and reads`, async () => {
    const tally = {runs: 0, expanding: 0, reads: 0, sessions: 0, inMemory: 0}
    await fc.assert(fc.asyncProperty(
      fc.array(buildArb, {minLength: 8, maxLength: 30}),
      fc.array(worldArb, {minLength: 2, maxLength: 14}),
      fc.array(fc.record({r: readArb, fresh: fc.boolean()}), {minLength: 1, maxLength: 10}),
      async (tree, world, reads) => {
        const {image, names, expanding} = buildWorld(tree, world)
        const ctx: Ctx = {names, engine, host, n: 0, inMemory: 0}
        // 1. The view, in several sessions, against the same reads after a real expansion.
        const view = await readView(image, reads, true, ctx, false)
        const dev = new MemDevice(image)
        const vol = Volume.openDevice(dev, {write: true})
        for (const f of listFilesets(vol)) expandAll(vol, getFileset(vol, f.name))
        vol.close()
        expect(listFilesets(Volume.openDevice(new ImageView(dev.durable), {write: false})).filter((f) => f.state === FS_EXPANDING)).to.deep.equal([])
        const expanded = await readView(Buffer.from(dev.durable), reads, true, ctx, false)
        for (let i = 0; i < reads.length; i++) expect(view[i], `read ${i}: ${JSON.stringify(reads[i].r)}`).to.deep.equal(expanded[i])
        // 2. The view in one session, against a writable open that expands on demand.
        const once = reads.map(({r}) => ({r, fresh: false}))
        const view1 = await readView(image, once, false, ctx, true)
        const wdev = new MemDevice(image)
        const wvol = Volume.openDevice(wdev, {write: true})
        const written: unknown[] = []
        try {
          for (const {r} of once) {
            written.push(await doRead(wvol, r, false, ctx))
            written.push(progress(wvol))
            wvol.commit()
          }
        } finally {
          wvol.close()
        }
        for (let i = 0; i < view1.length; i++) expect(view1[i], `read ${i >> 1} in one session: ${JSON.stringify(once[i >> 1].r)}`).to.deep.equal(written[i])
        tally.runs++
        tally.expanding += expanding
        tally.reads += reads.length
        tally.sessions += 1 + reads.filter((x) => x.fresh).length
        tally.inMemory += ctx.inMemory
      }), {numRuns: runs, ...(process.env.PRISM_VIEW_SEED ? {seed: Number(process.env.PRISM_VIEW_SEED), path: process.env.PRISM_VIEW_PATH, endOnFailure: true} : {})})
    console.log(`      ${tally.runs} runs: ${tally.expanding} clones still expanding when read, ${tally.reads} reads in ${tally.sessions} read-only sessions, ` +
      `${tally.inMemory} sessions expanded in memory`)
  })
})
