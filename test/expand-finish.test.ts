// A clone in flight (lazy or async) that reads and writes have expanded whole ends its
// expansion by itself, as `prism expand` would end it: an ordinary fileset, its clone-state
// file freed, its source no longer guarded. Before, it stayed "expanding N/N" until `prism
// expand` ran. A clone with any directory left unexpanded never ends early, whatever its
// counters say, and nothing either side shows changes.
import {expect} from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import {FS_ACTIVE, FS_EXPANDING} from '../src/format/constants.js'
import {getFileset, listFilesets, saveFileset} from '../src/fs/filesets.js'
import {mkfs, namespace, withImage} from '../src/fs/image.js'
import type {Namespace} from '../src/fs/namespace.js'
import {Volume} from '../src/fs/volume.js'
import {clone, type CloneOptions} from '../src/clone/clone.js'
import {fsckImage} from '../src/fsck/index.js'
import {newImage, prism, snapshot, tmpDir} from './helpers.js'

function fill(ns: Namespace): void {
  ns.mkdir('/a/b/c', {parents: true})
  ns.mkdir('/a/empty')
  ns.mkdir('/x/y', {parents: true})
  ns.writeFile('/a/b/c/f', Buffer.from('deep\n'))
  ns.writeFile('/a/g', Buffer.alloc(10_000, 3))
  ns.writeFile('/x/y/secret.key', Buffer.from('left out\n'))
  ns.writeFile('/x/h1', Buffer.from('hard-linked\n'))
  ns.link('/x/h1', '/a/b/h2')
  ns.symlink('a/g', '/s')
  ns.mkdir('/wide')
  for (let i = 0; i < 200; i++) ns.writeFile(`/wide/f${i}`, Buffer.from(`${i}\n`))
}

/** Reads every directory of the fileset (which expands each as it is reached). */
function readAll(ns: Namespace, dir = '/'): void {
  for (const e of ns.readdir(dir)) {
    const p = `${dir === '/' ? '' : dir}/${e.name}`
    if (ns.stat(p).type === 'dir') readAll(ns, p)
  }
}

function state(img: string, name: string): {state: number, stateIno: number, srcClonestart: number} {
  return withImage(img, {write: false}, (vol) => {
    const f = getFileset(vol, name)
    return {state: f.state, stateIno: f.stateIno, srcClonestart: getFileset(vol, 'root').clonestart}
  })
}

const CASES: Array<{name: string, opts: CloneOptions}> = [
  {name: 'a lazy clone', opts: {mode: 'lazy'}},
  {name: 'a lazy clone with exclude patterns (a clone-state file)', opts: {mode: 'lazy', exclude: ['*.key']}},
  {name: 'an async clone whose expander has not run', opts: {mode: 'async', exclude: ['/wide/f1*']}},
]

describe('a clone expanded whole by reads and writes ends its expansion', function () {
  this.timeout(120_000)
  let dir: string
  beforeEach(() => { dir = tmpDir() })
  afterEach(() => fs.rmSync(dir, {recursive: true, force: true}))

  /** The clone `c`, and `model`, a sync clone made with the same patterns (reading it expands nothing of c). */
  const make = (opts: CloneOptions): {img: string, want: () => Record<string, string>} => {
    const img = path.join(dir, 'disk.img')
    const vol = mkfs(img, {size: 32 * 1024 * 1024, inodeCount: 4096})
    fill(namespace(vol, 'root'))
    clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'}, opts)
    clone(vol, {fileset: 'root', path: '/'}, {fileset: 'model'}, {...opts, mode: 'sync'})
    vol.close()
    return {img, want: () => withImage(img, {write: false}, (v) => snapshot(namespace(v, 'model')))}
  }

  for (const c of CASES) {
    it(`${c.name}: read whole, it is an ordinary fileset showing what it showed; the source's writes stay out of it`, () => {
      const {img, want: model} = make(c.opts)
      const want = model()
      const stateFile = state(img, 'c').stateIno
      // Partly read: still expanding.
      withImage(img, {write: true}, (vol) => { namespace(vol, 'c').readdir('/a') })
      expect(state(img, 'c').state).to.equal(FS_EXPANDING)
      withImage(img, {write: true}, (vol) => readAll(namespace(vol, 'c')))
      const st = state(img, 'c')
      expect(st, 'the clone').to.deep.equal({state: FS_ACTIVE, stateIno: 0, srcClonestart: 0})
      // Its clone-state file, if it had one, is freed.
      if (stateFile !== 0) expect(withImage(img, {write: false}, (vol) => vol.tryIget(stateFile)?.r.nlink ?? 0)).to.equal(0)
      withImage(img, {write: true}, (vol) => {
        expect(snapshot(namespace(vol, 'c'))).to.deep.equal(want)
        const src = namespace(vol, 'root')
        src.writeFile('/a/b/c/f', Buffer.from('changed in the source\n'))
        src.unlink('/x/h1')
        src.rmdir('/a/empty')
      })
      withImage(img, {write: false}, (vol) => expect(snapshot(namespace(vol, 'c'))).to.deep.equal(want))
      const r = fsckImage(img, {repair: false})
      expect(r.exitCode, r.problems.map((p) => p.message).join('\n')).to.equal(0)
    })
  }

  it('a clone with a directory left unexpanded does not end early, whatever it removed meanwhile; it still shows its tree', () => {
    const {img, want} = make({mode: 'lazy'})
    // Directories moved and removed before they were read (the same done to the model), then
    // only some read: still expanding.
    withImage(img, {write: true}, (vol) => {
      for (const name of ['c', 'model']) {
        const ns = namespace(vol, name)
        ns.rename('/wide', '/a/wide-moved')
        ns.unlink('/x/y/secret.key')
        ns.rmdir('/x/y')
        ns.rmdir('/a/empty')
      }
      readAll(namespace(vol, 'c'), '/x')
    })
    const moved = want()
    expect(state(img, 'c').state).to.equal(FS_EXPANDING)
    withImage(img, {write: true}, (vol) => readAll(namespace(vol, 'c')))
    withImage(img, {write: false}, (vol) => expect(snapshot(namespace(vol, 'c'))).to.deep.equal(moved))
    const r = fsckImage(img, {repair: false})
    expect(r.exitCode).to.equal(0)
    expect(state(img, 'c').state).to.equal(FS_ACTIVE)
    withImage(img, {write: false}, (vol) => expect(snapshot(namespace(vol, 'c'))).to.deep.equal(moved))
  })

  it('a clone read whole in a session that did not end it (closed by the library alone) ends at the next writable session; counters that say done while a directory is left are set right, the clone kept', () => {
    const {img, want} = make({mode: 'lazy'})
    // Read whole by a volume the library alone opens and closes (as a session that stopped
    // before its end would leave it): expanding N/N.
    const v = Volume.open(img, {write: true})
    readAll(namespace(v, 'c'))
    v.close()
    const c = withImage(img, {write: false}, (v) => getFileset(v, 'c'))
    expect([c.state, c.dirsDone]).to.deep.equal([FS_EXPANDING, c.dirsTotal])
    // The next writable session, whatever it does, ends it; a read-only one changes nothing.
    withImage(img, {write: false}, () => undefined)
    expect(state(img, 'c').state).to.equal(FS_EXPANDING)
    withImage(img, {write: true}, () => undefined)
    expect(state(img, 'c').state).to.equal(FS_ACTIVE)
    withImage(img, {write: false}, (v) => expect(snapshot(namespace(v, 'c'))).to.deep.equal(want()))

    // Counters that say done while directories are left unexpanded: set to what is left.
    fs.rmSync(img)
    const {img: img2} = make({mode: 'lazy'})
    const v2 = Volume.open(img2, {write: true})
    namespace(v2, 'c').readdir('/') // the root expanded: /a, /x and /wide left
    saveFileset(v2, {...getFileset(v2, 'c'), dirsDone: 50, dirsTotal: 10})
    v2.close()
    withImage(img2, {write: true}, () => undefined)
    const c2 = withImage(img2, {write: false}, (v) => getFileset(v, 'c'))
    expect([c2.state, c2.dirsDone, c2.dirsTotal]).to.deep.equal([FS_EXPANDING, 50, 53])
  })

  it('the CLI: ls -R of a lazy clone leaves it active in fileset list; a partial ls leaves it expanding', () => {
    const img = newImage(dir, 32 * 1024 * 1024)
    withImage(img, {write: true}, (vol) => fill(namespace(vol, 'root')))
    const ok = (...args: string[]) => {
      const r = prism([...args, '-i', img])
      expect(r.status, r.stderr).to.equal(0)
      return r.stdout
    }
    ok('clone', 'root', 'c', '--mode', 'lazy')
    ok('ls', 'c:/a')
    const list = () => (JSON.parse(ok('fileset', 'list', '--json', '--no-space')) as Array<{name: string, state: string}>).find((f) => f.name === 'c')!.state
    expect(list()).to.equal('expanding')
    const before = ok('ls', '-R', 'root:/')
    expect(ok('ls', '-R', 'c:/').replaceAll('c:/', 'root:/')).to.equal(before)
    expect(list()).to.equal('active')
    expect(ok('fsck')).to.match(/^clean/)
    expect(withImage(img, {write: false}, (vol) => listFilesets(vol).map((f) => f.state))).to.deep.equal([FS_ACTIVE, FS_ACTIVE])
  })
})
