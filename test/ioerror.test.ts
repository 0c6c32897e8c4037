// I/O-error injection, in the manner of SQLite's I/O-error loop: a mixed workload of commands
// (cp -r of a host tree in, mkdir, write, truncate, ln, mv, rm -r, a sync clone, an async
// clone, its expansion in slices, a fileset delete) runs over an in-memory device (MemDevice)
// that fails its Nth read, write or sync with EIO or ENOSPC, once or from then on, for N over
// every operation the command makes. For every run:
//   - the command either succeeds or throws a PrismError, never anything else;
//   - it never reports success once an operation failed (above all a sync);
//   - the image it leaves, read by a healthy device over the same bytes (as the process left
//     them, and after a power loss that keeps only what was synced plus a random part of the
//     rest), opens (replaying its journal), fsck finds nothing, and its filesets show exactly
//     the state before the command or after it: everything earlier commands reported done is
//     there, and a failed command changed nothing or finished.
//
// Every injection point fails once and persistently, EIO at one point and ENOSPC at the next
// (all four variants, EIO or ENOSPC, once or persistent, with PRISM_IOERR_FULL=1).
//
//   PRISM_IOERR_FULL=1    all four variants at every point, and four power-loss seeds per run instead of one
//   PRISM_IOERR_ONLY=K:OP:N:VARIANT   one run (command K, op read|write|sync, N, variant 0-3), to replay a failure
import {expect} from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import {clone} from '../src/clone/clone.js'
import {Expander, expandAll} from '../src/fs/expand.js'
import {MemDevice, type FaultOp} from '../src/device/mem.js'
import {PrismError} from '../src/errors.js'
import {FS_EXPANDING} from '../src/format/constants.js'
import {getFileset, listFilesets} from '../src/fs/filesets.js'
import {deleteFileset, namespace} from '../src/fs/image.js'
import {Volume} from '../src/fs/volume.js'
import {copy} from '../src/ops/copy.js'
import {importBuffer, mkTar} from './tar-lib.js'
import {mulberry32} from '../src/device/mem.js'
import {baseImage, bytes, describeVolume, fsckProblems, recover, sha, structuralProblems, type Op} from './crash-lib.js'
import {tmpDir} from './helpers.js'

const FULL = process.env.PRISM_IOERR_FULL === '1'
const ONLY = process.env.PRISM_IOERR_ONLY ?? null
const SEEDS = FULL ? 4 : 1

const VARIANTS = [
  {errno: 'EIO', persistent: false},
  {errno: 'ENOSPC', persistent: true},
  {errno: 'EIO', persistent: true},
  {errno: 'ENOSPC', persistent: false},
] as const

function hostTree(dir: string): string {
  const t = path.join(dir, 'tree')
  fs.mkdirSync(path.join(t, 'etc'), {recursive: true})
  fs.mkdirSync(path.join(t, 'home', 'alice'), {recursive: true})
  fs.mkdirSync(path.join(t, 'var', 'log'), {recursive: true})
  fs.writeFileSync(path.join(t, 'etc', 'hostname'), 'prism-host\n')
  fs.writeFileSync(path.join(t, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n'.repeat(50))
  fs.writeFileSync(path.join(t, 'home', 'alice', 'notes.txt'), bytes(20000, 11))
  fs.writeFileSync(path.join(t, 'var', 'log', 'syslog'), 'boot\n')
  fs.writeFileSync(path.join(t, 'tool'), bytes(9000, 12), {mode: 0o755})
  fs.mkdirSync(path.join(t, 'many'))
  for (let i = 0; i < 60; i++) fs.writeFileSync(path.join(t, 'many', `entry-${String(i).padStart(2, '0')}`), bytes(20 + i * 13, 100 + i))
  fs.symlinkSync('hostname', path.join(t, 'etc', 'hn'))
  fs.linkSync(path.join(t, 'etc', 'passwd'), path.join(t, 'etc', 'passwd.bak'))
  return t
}

function workload(tree: string): Op[] {
  return [
    {name: 'cp -r host tree', run: (_ns, vol) => { copy(vol, [{kind: 'host', path: tree}], {kind: 'image', fileset: 'root', path: '/imp'}, {recursive: true}) }},
    {name: 'mkdir -p', run: (ns) => { ns.mkdir('/a/b/c', {parents: true}) }},
    {name: 'write', run: (ns) => { ns.writeFile('/a/file', bytes(3 * 4096 + 100, 21)) }},
    {name: 'write --append', run: (ns) => { ns.writeFile('/a/file', bytes(5000, 22), {append: true}) }},
    {name: 'truncate', run: (ns) => { ns.truncate('/imp/home/alice/notes.txt', 5000) }},
    {name: 'ln', run: (ns) => { ns.link('/a/file', '/a/b/link') }},
    {name: 'mv', run: (ns) => { ns.rename('/imp/etc', '/a/etc2') }},
    {name: 'rm -r', run: (ns) => { ns.remove('/imp/var', {recursive: true}) }},
    {name: 'ln -s, chmod', run: (ns) => { ns.symlink('../file', '/a/b/sym'); ns.chmod('/a/file', 0o600) }},
    {name: 'setxattr (inline, then 12 KB in blocks)', run: (ns) => { ns.setXattr('/a/file', Buffer.from('user.a'), Buffer.from('1')); ns.setXattr('/a/file', Buffer.from('user.big'), bytes(12_000, 24)) }},
    {name: 'mknod, xattr on it', run: (ns) => { ns.mknod('/a/null', 0o020666, {major: 1, minor: 3}); ns.setXattr('/a/null', Buffer.from('security.selinux'), Buffer.from('null_device_t')) }},
    {name: 'import from tar', run: (_ns, vol) => {
      importBuffer(vol, {fileset: 'root', path: '/tar'}, mkTar([
        {name: 'd/', type: 'dir'}, {name: 'd/f', data: bytes(9000, 25), pax: [['SCHILY.xattr.user.k', 'v'], ['mtime', '1600000000.123456789']]},
        {name: 'd/fifo', type: 'fifo'}, {name: 'd/l', type: 'symlink', link: 'f'},
      ]))
    }},
    {name: 'rm of half a hashed directory', run: (ns) => { for (let i = 0; i < 60; i += 2) ns.unlink(`/imp/many/entry-${String(i).padStart(2, '0')}`) }},
    {name: 'clone --mode sync', run: (_ns, vol) => { clone(vol, {fileset: 'root', path: '/'}, {fileset: 's'}, {mode: 'sync', exclude: ['/imp/home']}) }},
    {name: 'clone --mode async', run: (_ns, vol) => { clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'}, {mode: 'async', exclude: ['/a/b/c']}) }},
    {name: 'write in the source of c', run: (ns) => { ns.writeFile('/a/b/new', bytes(700, 23)) }},
    {name: 'expansion slices', run: (_ns, vol) => {
      const e = new Expander(getFileset(vol, 'c').id)
      while (e.slice(vol, 60_000, 2) === 'more') vol.commit()
    }},
    {name: 'fileset delete', run: (_ns, vol) => { deleteFileset(vol, 's') }},
  ]
}

interface RunOutcome {
  threw: unknown
  /** faults that fired, by kind */
  fired: Record<FaultOp, number>
}

/** Runs one command on `dev` as the CLI does: open (replay), change, close; on failure abort. */
function runCommand(dev: MemDevice, op: Op, k: number): unknown {
  const random = Math.random
  Math.random = mulberry32(0x5eed + k) // deterministic hash seeds: the same I/O in every run
  try {
    let vol: Volume
    try {
      vol = Volume.openDevice(dev, {write: true})
    } catch (e) {
      return e
    }
    try {
      op.run(namespace(vol, 'root'), vol)
      vol.close()
    } catch (e) {
      try { vol.closeAbort() } catch { /* the first error is the one reported */ }
      return e
    }
    return null
  } finally {
    Math.random = random
  }
}

/** A device that fails as told and counts what failed. */
function faulty(img: Buffer, kind: FaultOp, at: number, v: typeof VARIANTS[number]): {dev: MemDevice, fired: Record<FaultOp, number>} {
  const dev = new MemDevice(img)
  dev.faults = [{op: kind, at, persistent: v.persistent, errno: v.errno}]
  const fired = {read: 0, write: 0, sync: 0}
  for (const op of ['read', 'write', 'sync'] as const) {
    const orig = (dev[op] as (...a: unknown[]) => unknown).bind(dev)
    ;(dev as unknown as Record<string, unknown>)[op] = (...a: unknown[]) => {
      try {
        return orig(...a)
      } catch (e) {
        if (e instanceof PrismError && /^simulated/.test(e.message)) fired[op]++
        throw e
      }
    }
  }
  return {dev, fired}
}

/** Filesets and trees, as any command sees them (an expanding clone read through expansion in memory). */
function view(img: Buffer): string {
  const vol = Volume.openDevice(new MemDevice(img), {write: true})
  try {
    const states = listFilesets(vol).map((f) => `${f.name} ${f.state === FS_EXPANDING ? 'expanding' : 'expanded'}`)
    for (const f of listFilesets(vol)) if (f.state === FS_EXPANDING) expandAll(vol, f)
    const d = {...describeVolume(vol, true), states}
    // An expanding clone is described as it shows itself (expanded in memory); its state
    // (EXPANDING or ACTIVE) tells whether its expansion finished.
    return JSON.stringify(d)
  } finally {
    vol.closeAbort()
  }
}

/** Recovers an image as the next command would, and checks it. Returns its view or throws. */
function recoverAndCheck(img: Buffer, cache: Map<string, string | Error>): string {
  const key = sha(img)
  const hit = cache.get(key)
  if (hit !== undefined) {
    if (hit instanceof Error) throw hit
    return hit
  }
  try {
    const rec = recover(img).img
    const probs = fsckProblems(rec)
    const expanding = (() => {
      const v = Volume.openDevice(new MemDevice(rec), {write: false})
      try { return listFilesets(v).some((f) => f.state === FS_EXPANDING) } finally { v.close() }
    })()
    if (!expanding) probs.push(...structuralProblems(rec))
    if (probs.length) throw new Error(`not clean after recovery: ${probs.slice(0, 6).join('; ')}`)
    const v = view(rec)
    cache.set(key, v)
    return v
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e))
    cache.set(key, err)
    throw err
  }
}

describe('I/O errors: every read, write and sync of a mixed workload fails in turn', function () {
  this.timeout(900_000)

  it('fails with a PrismError, never reports success after a failure, and leaves an image that recovers clean', () => {
    const dir = tmpDir('prism-ioerr-')
    const started = Date.now()
    try {
      const ops = workload(hostTree(dir))
      const failures: string[] = []
      const cache = new Map<string, string | Error>()
      let img = baseImage()
      let points = 0
      let runs = 0
      let failedRuns = 0
      let succeededRuns = 0
      const perOp: string[] = []
      const only = ONLY ? ONLY.split(':') : null
      for (let k = 0; k < ops.length; k++) {
        const op = ops[k]
        // The run without faults: the state after, and how many operations of each kind.
        const dry = new MemDevice(img)
        const err = runCommand(dry, op, k)
        if (err) throw new Error(`${op.name} fails without a fault: ${(err as Error).stack}`)
        const next = Buffer.from(dry.durable)
        const before = recoverAndCheck(img, cache)
        const after = recoverAndCheck(next, cache)
        expect(after, `${op.name} changed nothing`).to.not.equal(before)
        const counts = {...dry.counts}
        perOp.push(`${op.name} ${counts.read}r/${counts.write}w/${counts.sync}s`)
        for (const kind of ['sync', 'write', 'read'] as const) {
          for (let n = 1; n <= counts[kind]; n++) {
            if (only && (Number(only[0]) !== k || only[1] !== kind || Number(only[2]) !== n)) continue
            points++
            // Every point fails once and from then on; the errno alternates between neighbouring
            // points (all four variants at every point with PRISM_IOERR_FULL=1).
            const variants = only ? [Number(only[3])] : FULL ? [0, 1, 2, 3] : n % 2 === 0 ? [0, 1] : [3, 2]
            for (const vi of variants) {
              const v = VARIANTS[vi]
              runs++
              const where = `${op.name} (PRISM_IOERR_ONLY=${k}:${kind}:${n}:${vi}, ${v.errno}${v.persistent ? ' persistent' : ' once'})`
              const {dev, fired} = faulty(img, kind, n, v)
              const threw = runCommand(dev, op, k)
              const any = fired.read + fired.write + fired.sync
              if (threw && !(threw instanceof PrismError)) {
                failures.push(`${where}: threw a raw ${(threw as Error).name}: ${(threw as Error).stack?.split('\n').slice(0, 4).join(' | ')}`)
                continue
              }
              if (!threw && any > 0) {
                failures.push(`${where}: reported success after ${fired.sync ? 'a failed sync' : `a failed ${kind}`}`)
                continue
              }
              if (threw) failedRuns++
              else succeededRuns++
              // The bytes as the process left them (the OS still had its writes), and after a power loss.
              const images: Array<[string, Buffer]> = [['as left', Buffer.from(dev.volatile)]]
              for (let seed = 0; seed < SEEDS; seed++) images.push([`after power loss (seed ${seed})`, dev.afterPowerLoss(n * 7 + vi * 1000 + seed)])
              for (const [label, leftImg] of images) {
                try {
                  const got = recoverAndCheck(leftImg, cache)
                  if (!threw && got !== after) failures.push(`${where}, ${label}: the command succeeded but its change is not there`)
                  else if (got !== before && got !== after) failures.push(`${where}, ${label}: the state is neither the one before nor the one after the command`)
                } catch (e) {
                  failures.push(`${where}, ${label}: ${(e as Error).message.split('\n')[0]}`)
                }
              }
              if (failures.length > 40) break
            }
            if (failures.length > 40) break
          }
        }
        if (failures.length > 40) break
        img = next
      }
      console.log(`      ${points} injection points, ${runs} runs (${failedRuns} failed cleanly, ${succeededRuns} unaffected), ${cache.size} distinct images checked, ${((Date.now() - started) / 1000).toFixed(1)} s`)
      console.log(`      per command: ${perOp.join(', ')}`)
      expect(failures, failures.slice(0, 15).join('\n')).to.deep.equal([])
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })
})
