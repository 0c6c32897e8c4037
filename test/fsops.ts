// Random filesystem operations for model-based tests: generators (fast-check) and a
// runner that applies one operation to the real namespace and to the reference model.
import fc from 'fast-check'
import {BLOCK_SIZE} from '../src/format/constants.js'
import {planGeometry} from '../src/format/superblock.js'
import {MemDevice} from '../src/device/mem.js'
import {PrismError} from '../src/errors.js'
import {Volume} from '../src/fs/volume.js'
import {createEmptyFileset, namespace} from '../src/fs/image.js'
import '../src/fs/namespace.js'
import {Model} from './model.js'
import {copy} from '../src/ops/copy.js'
import {chownPath, touchPath} from '../src/ops/attrs.js'

export const NAMES = ['a', 'b']
export const pathArb = fc.array(fc.constantFrom(...NAMES), {minLength: 1, maxLength: 3}).map((c) => '/' + c.join('/'))
/**
 * Exclude patterns of every kind the rules name (README "prism clone"), over the model's
 * names: absolute paths, names at any depth, anchored relative paths, '**', a trailing '/',
 * globs, braces, and '!' negations.
 */
export const patternArb: fc.Arbitrary<string> = fc.oneof(
  pathArb,
  fc.record({
    neg: fc.boolean(),
    lead: fc.boolean(),
    trail: fc.boolean(),
    segs: fc.array(fc.constantFrom(...NAMES, '*', '?', '[ab]', '[!a]', '{a,b}', '**', 'a*'), {minLength: 1, maxLength: 3}),
  }).map((x) => `${x.neg ? '!' : ''}${x.lead ? '/' : ''}${x.segs.join('/')}${x.trail ? '/' : ''}`),
)
export const dataArb = fc.oneof(
  fc.uint8Array({maxLength: 40}),
  fc.integer({min: 130, max: 9000}).map((n) => new Uint8Array(n).fill(n % 251)),
).map((u) => Buffer.from(u))

export type Op =
  | {op: 'mkdir', p: string} | {op: 'write', p: string, data: Buffer} | {op: 'append', p: string, data: Buffer}
  | {op: 'truncate', p: string, size: number} | {op: 'chmod', p: string, perm: number} | {op: 'unlink', p: string}
  | {op: 'rmr', p: string} | {op: 'rename', a: string, b: string} | {op: 'link', a: string, b: string}
  | {op: 'symlink', t: string, p: string} | {op: 'cp', a: string, b: string} | {op: 'reopen'}
  | {op: 'cpr', a: string, b: string, T: boolean} | {op: 'lnf', a: string, b: string} | {op: 'symf', t: string, p: string}
  | {op: 'chown', p: string, uid: number, gid: number} | {op: 'setx', p: string, name: string, value: string}
  | {op: 'rmx', p: string, name: string} | {op: 'mknod', p: string, type: 'fifo' | 'chardev'} | {op: 'touch', p: string}

/** Attribute names (user.* only on files and directories, trusted.* on anything) and values, some past the inode's 140 bytes. */
const xnameArb = fc.constantFrom('user.a', 'user.b', 'trusted.t')
const xvalueArb = fc.oneof(fc.constantFrom('1', 'two', ''), fc.integer({min: 100, max: 3000}).map((n) => 'v'.repeat(n)))

export const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({weight, arbitrary})
export const opArb: fc.Arbitrary<Op> = fc.oneof(
  w(4, pathArb.map((p) => ({op: 'mkdir', p}) as Op)),
  w(3, fc.tuple(pathArb, dataArb).map(([p, data]) => ({op: 'write', p, data}) as Op)),
  w(4, fc.tuple(pathArb, pathArb).map(([a, b]) => ({op: 'rename', a, b}) as Op)),
  w(1, fc.tuple(pathArb, dataArb).map(([p, data]) => ({op: 'append', p, data}) as Op)),
  w(1, fc.tuple(pathArb, fc.integer({min: 0, max: 3 * BLOCK_SIZE})).map(([p, size]) => ({op: 'truncate', p, size}) as Op)),
  w(1, fc.tuple(pathArb, fc.constantFrom(0o600, 0o755, 0o640)).map(([p, perm]) => ({op: 'chmod', p, perm}) as Op)),
  w(1, pathArb.map((p) => ({op: 'unlink', p}) as Op)),
  w(1, pathArb.map((p) => ({op: 'rmr', p}) as Op)),
  w(1, fc.tuple(pathArb, pathArb).map(([a, b]) => ({op: 'link', a, b}) as Op)),
  w(2, fc.tuple(pathArb, pathArb).map(([a, b]) => ({op: 'cp', a, b}) as Op)),
  w(1, pathArb.map((p) => ({op: 'symlink', t: '/nowhere' + p, p}) as Op)),
  w(1, fc.constant({op: 'reopen'} as Op)),
  // Replacing one kind of object with another (issue 15): cp -r [-T] merging and refusing,
  // ln -f and ln -sf over files, symlinks and directories.
  w(2, fc.tuple(pathArb, pathArb, fc.boolean()).map(([a, b, T]) => ({op: 'cpr', a, b, T}) as Op)),
  w(1, fc.tuple(pathArb, pathArb).map(([a, b]) => ({op: 'lnf', a, b}) as Op)),
  w(1, pathArb.map((p) => ({op: 'symf', t: '/nowhere' + p, p}) as Op)),
  // What a root tree holds besides data (issue 16): owners, extended attributes, special
  // files, times.
  w(1, fc.tuple(pathArb, fc.constantFrom(0, 5, 1000), fc.constantFrom(0, 7, 1000)).map(([p, uid, gid]) => ({op: 'chown', p, uid, gid}) as Op)),
  w(2, fc.tuple(pathArb, xnameArb, xvalueArb).map(([p, name, value]) => ({op: 'setx', p, name, value}) as Op)),
  w(1, fc.tuple(pathArb, xnameArb).map(([p, name]) => ({op: 'rmx', p, name}) as Op)),
  w(1, fc.tuple(pathArb, fc.constantFrom('fifo' as const, 'chardev' as const)).map(([p, type]) => ({op: 'mknod', p, type}) as Op)),
  w(1, pathArb.map((p) => ({op: 'touch', p}) as Op)),
)

/**
 * A starting tree for a run: each path of depth 1 and 2 is, at random, missing, a directory
 * (then possibly filled below), a file or a symlink, so that the random ops that follow meet
 * every kind of object at the names they use.
 */
export const setupArb: fc.Arbitrary<Op[]> = fc.array(fc.constantFrom('none', 'dir', 'dir', 'file', 'symlink'), {minLength: 6, maxLength: 6}).map((kinds) => {
  const paths = ['/a', '/b', '/a/a', '/a/b', '/b/a', '/b/b']
  return paths.flatMap((p, i): Op[] => {
    switch (kinds[i]) {
      case 'dir': return [{op: 'mkdir', p}]
      case 'file': return [{op: 'write', p, data: Buffer.from(`setup ${p}`)}]
      case 'symlink': return [{op: 'symlink', t: '/nowhere' + p, p}]
      default: return []
    }
  })
})

const formatted = new Map<number, Buffer>()

/** A freshly formatted image on a memory device (formatted once per size, then copied). */
export function memImage(blocks = 4096): MemDevice {
  let base = formatted.get(blocks)
  if (!base) {
    const dev = new MemDevice(Buffer.alloc(blocks * BLOCK_SIZE))
    Volume.format(dev, planGeometry({blockCount: blocks, journalBlocks: 256, inodeCount: 1024, filesetSlots: 64}), (vol) => {
      createEmptyFileset(vol, 'root')
    }).close()
    base = dev.durable
    formatted.set(blocks, base)
  }
  return new MemDevice(base)
}

/**
 * Runs one op on the namespace and on the model. `real` and `model` say whether each
 * succeeded; `commit` whether the real changes stand (a copy that refused some entries keeps
 * the rest, as cp does).
 */
export function apply(ns: ReturnType<typeof namespace>, m: Model, o: Op): {real: boolean, model: boolean, commit: boolean} {
  let model = false
  let partial = false
  const cp = (a: string, b: string, opts: {recursive?: boolean, noTargetDirectory?: boolean}) => {
    const st = copy(ns.vol, [{kind: 'image', fileset: ns.fs.name, path: a}], {kind: 'image', fileset: ns.fs.name, path: b}, opts)
    if (st.errors.length) {
      partial = true
      throw new PrismError(st.errors[0].code, st.errors[0].message)
    }
  }
  const real = attempt(() => {
    switch (o.op) {
      case 'mkdir': ns.mkdir(o.p); break
      case 'write': ns.writeFile(o.p, o.data); break
      case 'append': ns.writeFile(o.p, o.data, {append: true}); break
      case 'truncate': ns.truncate(o.p, o.size); break
      case 'chmod': ns.chmod(o.p, o.perm); break
      case 'unlink': ns.unlink(o.p); break
      case 'rmr': ns.remove(o.p, {recursive: true}); break
      case 'rename': ns.rename(o.a, o.b); break
      case 'link': ns.link(o.a, o.b); break
      case 'symlink': ns.symlink(o.t, o.p); break
      case 'cp': cp(o.a, o.b, {}); break
      case 'cpr': cp(o.a, o.b, {recursive: true, noTargetDirectory: o.T}); break
      case 'lnf': ns.link(o.a, o.b, {force: true}); break
      case 'symf': ns.symlink(o.t, o.p, {force: true}); break
      case 'chown': chownPath(ns, o.p, {uid: o.uid, gid: o.gid}, {noDereference: true}); break
      case 'setx': ns.setXattr(o.p, Buffer.from(o.name), Buffer.from(o.value, 'latin1')); break
      case 'rmx': ns.removeXattr(o.p, Buffer.from(o.name)); break
      case 'mknod': ns.mknod(o.p, o.type === 'fifo' ? 0o010644 : 0o020644, {major: 1, minor: 3}); break
      case 'touch': touchPath(ns, o.p, {noDereference: true, time: {atime: {s: 1, ns: 2}, mtime: {s: 3, ns: 4}}}); break
    }
  })
  switch (o.op) {
    case 'mkdir': model = m.mkdir(o.p); break
    case 'write': model = m.write(o.p, o.data, false); break
    case 'append': model = m.write(o.p, o.data, true); break
    case 'truncate': model = m.truncate(o.p, o.size); break
    case 'chmod': model = m.chmod(o.p, o.perm); break
    case 'unlink': model = m.unlink(o.p); break
    case 'rmr': model = m.rmr(o.p); break
    case 'rename': model = m.rename(o.a, o.b); break
    case 'link': model = m.link(o.a, o.b); break
    case 'symlink': model = m.symlink(o.t, o.p); break
    case 'cp': model = m.cp(o.a, o.b); break
    case 'cpr': model = Model.copyTree(m, o.a, m, o.b, {r: true, T: o.T}); break
    case 'lnf': model = m.linkForce(o.a, o.b, true); break
    case 'symf': model = m.symlink(o.t, o.p, true); break
    case 'chown': model = m.chown(o.p, o.uid, o.gid); break
    case 'setx': model = m.setXattr(o.p, o.name, o.value); break
    case 'rmx': model = m.removeXattr(o.p, o.name); break
    case 'mknod': model = m.mknod(o.p, o.type); break
    case 'touch': model = m.touch(o.p); break
  }
  return {real, model, commit: real || partial}
}

/** What kind of object stands at p ('none', 'file', 'symlink', 'empty dir', 'dir'), for counting the cases generated. */
export function kindAt(m: Model, p: string): string {
  const n = m.get(p)
  if (!n) return 'none'
  if (n.kind === 'dir') return n.children.size ? 'dir' : 'empty dir'
  return n.obj.kind === 'special' ? n.obj.type : n.obj.kind
}

export function attempt(fn: () => void): boolean {
  try {
    fn()
    return true
  } catch (e) {
    if (e instanceof PrismError && e.code !== 'EBADIMAGE') return false
    throw e
  }
}

