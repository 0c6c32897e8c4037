// Model-based test of the filesystem core: random sequences of operations run against the
// real namespace (on a memory block device) and against test/model.ts; after every step the
// whole tree must match, every failure must be predicted by the model, and the image must
// survive closing and reopening. PRISM_MODEL_RUNS raises the number of runs.
import {expect} from 'chai'
import fc from 'fast-check'
import {BLOCK_SIZE} from '../src/format/constants.js'
import {planGeometry} from '../src/format/superblock.js'
import {MemDevice} from '../src/device/mem.js'
import {PrismError} from '../src/errors.js'
import {Volume} from '../src/fs/volume.js'
import {createEmptyFileset, namespace} from '../src/fs/image.js'
import '../src/fs/namespace.js'
import {Model} from './model.js'
import {snapshot} from './helpers.js'

const NAMES = ['a', 'b']
const pathArb = fc.array(fc.constantFrom(...NAMES), {minLength: 1, maxLength: 3}).map((c) => '/' + c.join('/'))
const dataArb = fc.oneof(
  fc.uint8Array({maxLength: 40}),
  fc.integer({min: 130, max: 9000}).map((n) => new Uint8Array(n).fill(n % 251)),
).map((u) => Buffer.from(u))

type Op =
  | {op: 'mkdir', p: string} | {op: 'write', p: string, data: Buffer} | {op: 'append', p: string, data: Buffer}
  | {op: 'truncate', p: string, size: number} | {op: 'chmod', p: string, perm: number} | {op: 'unlink', p: string}
  | {op: 'rmr', p: string} | {op: 'rename', a: string, b: string} | {op: 'link', a: string, b: string}
  | {op: 'symlink', t: string, p: string} | {op: 'reopen'}

const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({weight, arbitrary})
const opArb: fc.Arbitrary<Op> = fc.oneof(
  w(4, pathArb.map((p) => ({op: 'mkdir', p}) as Op)),
  w(3, fc.tuple(pathArb, dataArb).map(([p, data]) => ({op: 'write', p, data}) as Op)),
  w(4, fc.tuple(pathArb, pathArb).map(([a, b]) => ({op: 'rename', a, b}) as Op)),
  w(1, fc.tuple(pathArb, dataArb).map(([p, data]) => ({op: 'append', p, data}) as Op)),
  w(1, fc.tuple(pathArb, fc.integer({min: 0, max: 3 * BLOCK_SIZE})).map(([p, size]) => ({op: 'truncate', p, size}) as Op)),
  w(1, fc.tuple(pathArb, fc.constantFrom(0o600, 0o755, 0o640)).map(([p, perm]) => ({op: 'chmod', p, perm}) as Op)),
  w(1, pathArb.map((p) => ({op: 'unlink', p}) as Op)),
  w(1, pathArb.map((p) => ({op: 'rmr', p}) as Op)),
  w(1, fc.tuple(pathArb, pathArb).map(([a, b]) => ({op: 'link', a, b}) as Op)),
  w(1, pathArb.map((p) => ({op: 'symlink', t: '/nowhere' + p, p}) as Op)),
  w(1, fc.constant({op: 'reopen'} as Op)),
)

export function memImage(blocks = 4096): MemDevice {
  const dev = new MemDevice(Buffer.alloc(blocks * BLOCK_SIZE))
  Volume.format(dev, planGeometry({blockCount: blocks, journalBlocks: 256, inodeCount: 1024, filesetSlots: 64}), (vol) => {
    createEmptyFileset(vol, 'root')
  }).close()
  return dev
}

function apply(ns: ReturnType<typeof namespace>, m: Model, o: Op): {real: boolean, model: boolean} {
  let model = false
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
  }
  return {real, model}
}

function attempt(fn: () => void): boolean {
  try {
    fn()
    return true
  } catch (e) {
    if (e instanceof PrismError && e.code !== 'EBADIMAGE') return false
    throw e
  }
}

describe('model: the namespace behaves as a plain tree', function () {
  this.timeout(600000)
  const runs = Number(process.env.PRISM_MODEL_RUNS ?? 150)

  it(`matches the reference model over ${runs} random sequences`, () => {
    fc.assert(fc.property(fc.array(opArb, {minLength: 25, maxLength: 80}), (ops) => {
      const dev = memImage()
      let vol = Volume.openDevice(dev, {write: true})
      const m = new Model()
      const {freeBlocks, freeInodes} = vol.sb
      try {
        for (const o of ops) {
          if (o.op === 'reopen') {
            vol.close()
            vol = Volume.openDevice(dev, {write: true})
            continue
          }
          const ns = namespace(vol, 'root')
          const r = apply(ns, m, o)
          if (r.real) vol.commit()
          else vol.abort()
          expect(r.real, `${JSON.stringify(o)}: real ${r.real}, model ${r.model}`).to.equal(r.model)
          expect(snapshot(namespace(vol, 'root'))).to.deep.equal(m.snapshot())
        }
        // Removing everything returns every block and inode.
        const ns = namespace(vol, 'root')
        for (const e of ns.readdir('/')) ns.remove('/' + e.name, {recursive: true})
        vol.commit()
        expect([vol.sb.freeBlocks, vol.sb.freeInodes]).to.deep.equal([freeBlocks, freeInodes])
      } finally {
        vol.close()
      }
    }), {numRuns: runs})
  })
})
