// How a served image tells its other mounts' kernels about a change, without FUSE: the mounts
// here are fakes (ImageOptions.mountFn) whose cache notifications the test lets the kernel
// "take" when it chooses. So the order of events that a loaded machine produces now and then
// is produced every time.
//
// The rule under test: a request that changed something is answered only once every other
// mount's kernel has taken the change, so that no process reads stale data through another
// mount after its call returned. The one exception is a true cycle, two requests whose answers
// each wait on the other's mount (ServedImage.notify). A notification whose request was
// answered without waiting for it (a read's atime, a failed request) makes no such cycle: it
// once did, and a change through mount B right after a read through mount A was then answered
// before A's kernel had dropped the name (in a CI run, stat through A found a file unlinked through B).
import {expect} from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import type {FuseContext, FuseOps, FuseSession, MountFunction} from '../src/fuse/index.js'
import {ServedImage} from '../src/server/image.js'
import {newImage, tmpDir} from './helpers.js'

const O_RDONLY = 0
const O_WRONLY = 1

interface Note {
  what: string
  take: () => void
  taken: boolean
}

/** A mount that answers nothing itself: its ops are called by the test, its notifications wait for `take`. */
class FakeMount {
  ops!: FuseOps
  readonly notes: Note[] = []
  constructor(readonly mountpoint: string) {}

  session(): FuseSession {
    const hold = (what: string): Promise<boolean> => new Promise((resolve) => {
      const n: Note = {what, taken: false, take: () => {
        n.taken = true
        resolve(true)
      }}
      this.notes.push(n)
    })
    let end!: () => void
    const closed = new Promise<void>((r) => {
      end = r
    })
    return {
      mountpoint: this.mountpoint, device: undefined, conn: {} as FuseSession['conn'], closed,
      unmount: async () => end(),
      invalidateInode: (ino) => hold(`inode ${ino}`),
      invalidateEntry: (parent, name) => hold(`entry ${parent}/${name.toString()}`),
      notifyDelete: (parent, _child, name) => hold(`delete ${parent}/${name.toString()}`),
      forgetAnswers: () => {},
    }
  }

  takeAll(): void {
    for (const n of this.notes) if (!n.taken) n.take()
  }

  waiting(): string[] {
    return this.notes.filter((n) => !n.taken).map((n) => n.what)
  }
}

const ctx: FuseContext = {uid: 0, gid: 0, pid: 1, umask: 0o022, groups: () => []} as unknown as FuseContext

/** Settles within a few turns of the event loop, or 'pending'. */
async function state(p: unknown): Promise<'answered' | 'pending'> {
  let done = false
  void Promise.resolve(p).then(() => {
    done = true
  }, () => {
    done = true
  })
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r))
  return done ? 'answered' : 'pending'
}

describe('served image: other mounts are told of a change before it is answered', () => {
  let dir: string
  let served: ServedImage
  let a: FakeMount // the fileset root, at its top
  let b: FakeMount // the whole image: root/ is the fileset

  beforeEach(async () => {
    dir = tmpDir()
    const img = newImage(dir)
    const fakes = new Map<string, FakeMount>()
    const mountFn: MountFunction = async (mp, ops) => {
      const m = new FakeMount(mp)
      m.ops = ops
      fakes.set(mp, m)
      return m.session()
    }
    served = new ServedImage(img, {mountFn, onError: (m) => {
      throw new Error(m)
    }})
    await served.addMount({top: {fileset: 'root', path: '/'}, mountpoint: '/fake/a'})
    await served.addMount({top: null, mountpoint: '/fake/b'})
    a = fakes.get('/fake/a')!
    b = fakes.get('/fake/b')!
  })

  afterEach(async () => {
    a.takeAll()
    b.takeAll()
    await served.close()
    fs.rmSync(dir, {recursive: true, force: true})
  })

  /** Through b: creates root/NAME holding `data`; returns b's node of root/. */
  async function createThroughB(name: string, data: string): Promise<number> {
    const root = (await b.ops.lookup!(ctx, 1, Buffer.from('root'))).ino
    const done = b.ops.create!(ctx, root, Buffer.from(name), 0o100644, O_WRONLY)
    a.takeAll()
    const c = await done
    const w = b.ops.write!(ctx, c.entry.ino, c.open.fh!, 0, Buffer.from(data), {flags: O_WRONLY} as never)
    a.takeAll()
    await w
    await b.ops.release!(ctx, c.entry.ino, c.open.fh!, O_WRONLY)
    a.takeAll()
    return root
  }

  it('an unlink through b waits for a\'s kernel, though a read through a still has a notification (its atime) in flight to b', async () => {
    const root = await createThroughB('g', 'other')
    const g = (await a.ops.lookup!(ctx, 1, Buffer.from('g'))).ino
    const o = await a.ops.open!(ctx, g, O_RDONLY)
    expect((await a.ops.read!(ctx, g, o.fh!, 0, 100)).toString()).to.equal('other')
    // the read moved g's atime: b's kernel is told, and has not taken it yet
    expect(b.waiting()).to.not.deep.equal([])
    const unlinked = b.ops.unlink!(ctx, root, Buffer.from('g'))
    expect(a.waiting()).to.include('entry 1/g')
    expect(await state(unlinked)).to.equal('pending')
    a.takeAll()
    expect(await state(unlinked)).to.equal('answered')
    await unlinked
  })

  for (const op of ['readdir', 'readdirplus'] as const) {
    it(`so does one after a listing (${op}) through a, whose atime b has not taken yet`, async () => {
      const root = await createThroughB('h', 'y')
      const d = await a.ops.opendir!(ctx, 1, O_RDONLY)
      const names = [...await a.ops[op]!(ctx, 1, d.fh!, 0, 4096)].map((e) => e.name.toString())
      expect(names).to.include('h')
      expect(b.waiting()).to.not.deep.equal([]) // the listing moved root's atime; b has not taken it
      const unlinked = b.ops.unlink!(ctx, root, Buffer.from('h'))
      expect(a.waiting()).to.include('entry 1/h')
      expect(await state(unlinked)).to.equal('pending')
      a.takeAll()
      expect(await state(unlinked)).to.equal('answered')
    })
  }

  it('two answers that would wait on each other do not: the second is answered without waiting (no deadlock)', async () => {
    const root = await createThroughB('g', 'x')
    const madeA = a.ops.mkdir!(ctx, 1, Buffer.from('x'), 0o755)
    expect(await state(madeA)).to.equal('pending') // waits on b's kernel
    const madeB = b.ops.mkdir!(ctx, root, Buffer.from('y'), 0o755)
    expect(await state(madeB)).to.equal('answered') // would wait on a's, which waits on b's
    b.takeAll()
    expect(await state(madeA)).to.equal('answered')
  })
})
