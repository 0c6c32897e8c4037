// The image fuzzer's engine, shared by test/fuzz.test.ts and its worker process
// (test/fuzz-worker.ts): mutations of a real image biased to metadata (superblocks, journal,
// refcount table, inode table, fileset table, directory and extent-tree blocks), most of
// them resealed with the right checksum so that they reach the code behind the checks, and
// one execution = every library operation a command would run on the mutated image.
// An execution fails when anything but a PrismError escapes (the CLI would print "internal
// error" and exit 70), when fsck gives an exit code outside 0/1/4/8, or when a second fsck
// after --repair still finds something.
import fs from 'node:fs'
import path from 'node:path'
import {BLOCK_SIZE, FILESET_RECORD_SIZE, INODE_SIZE} from '../src/format/constants.js'
import {crc32} from '../src/format/checksum.js'
import {mulberry32} from '../src/device/mem.js'
import {PrismError} from '../src/errors.js'
import {decodeSuperblock} from '../src/format/superblock.js'
import {loadExtents} from '../src/fs/extents.js'
import {enterDir} from '../src/fs/dir.js'
import {namespace, withImage} from '../src/fs/image.js'
import {listFilesets} from '../src/fs/filesets.js'
import {filesetSpace} from '../src/fs/space.js'
import {copy} from '../src/ops/copy.js'
import {clone} from '../src/clone/clone.js'
import {fsckImage} from '../src/fsck/index.js'
import {IF_INLINE} from '../src/format/constants.js'
import type {Inode} from '../src/fs/inode.js'
import type {Volume} from '../src/fs/volume.js'

export type Seal = 'sb' | 'jsb' | 'tail' | 'inodes' | 'filesets' | 'hdr' | 'none'

export interface Target {
  block: number
  seal: Seal
  what: string
}

/** The metadata blocks of an image, each with how its checksum is computed. */
export function metadataTargets(img: string): Target[] {
  const buf = fs.readFileSync(img)
  const sb = decodeSuperblock(buf.subarray(0, BLOCK_SIZE))
  const out: Target[] = [{block: 0, seal: 'sb', what: 'superblock'}, {block: sb.blockCount - 1, seal: 'sb', what: 'backup superblock'}]
  out.push({block: sb.journalStart, seal: 'jsb', what: 'journal superblock'})
  for (let k = 1; k < Math.min(sb.journalBlocks, 24); k++) out.push({block: sb.journalStart + k, seal: 'tail', what: `journal block ${k}`})
  for (let i = 0; i < sb.refcountBlocks; i++) out.push({block: sb.refcountStart + i, seal: 'tail', what: 'refcount table'})
  for (let i = 0; i < sb.inodeTableBlocks; i++) {
    const b = sb.inodeTableStart + i
    const used = buf.subarray(b * BLOCK_SIZE, (b + 1) * BLOCK_SIZE).some((x) => x !== 0)
    if (used || i < 2) out.push({block: b, seal: 'inodes', what: 'inode table'})
  }
  out.push({block: sb.filesetTableStart, seal: 'filesets', what: 'fileset table'})
  withImage(img, {write: false}, (vol) => {
    for (const f of listFilesets(vol)) {
      const ns = namespace(vol, f.name)
      const walk = (dir: string, depth: number) => {
        const inode = ns.resolve(dir, false)
        if (!(inode.r.flags & IF_INLINE)) {
          for (const e of loadExtents(vol, inode)) for (let k = 0; k < Math.min(e.n, 4); k++) out.push({block: e.p + k, seal: 'hdr', what: e.l >= 0x8000_0000 ? 'directory pointer block' : 'directory bucket'})
        }
        for (const b of inode.treeBlocks) out.push({block: b, seal: 'hdr', what: 'extent node'})
        attrTargets(vol, inode, out)
        for (const e of ns.readdir(dir)) {
          const p = (dir === '/' ? '' : dir) + '/' + e.name
          const st = ns.stat(p)
          if (st.type === 'dir' && depth < 8) walk(p, depth + 1)
          else if (st.type === 'file') for (const b of ns.resolve(p, false).treeBlocks) out.push({block: b, seal: 'hdr', what: 'extent node'})
          if (st.type !== 'dir') attrTargets(vol, ns.resolve(p, false), out)
        }
      }
      walk('/', 0)
    }
  })
  // Pointer blocks are sealed at the tail; buckets and nodes in their header.
  for (const t of out) {
    if (t.what === 'directory pointer block') t.seal = 'tail'
  }
  return out
}

/** The data blocks of an inode's attribute set (FORMAT.md §14): checksummed inside the set, not per block. */
function attrTargets(vol: Volume, inode: Inode, out: Target[]): void {
  const a = inode.r.xattrIno ? vol.tryIget(inode.r.xattrIno) : null
  if (!a || a.r.flags & IF_INLINE) return
  for (const e of loadExtents(vol, a)) for (let k = 0; k < Math.min(e.n, 2); k++) out.push({block: e.p + k, seal: 'none', what: 'attribute set'})
}

/** Recomputes the checksums of one block after a mutation, the way the format seals it. */
export function reseal(buf: Buffer, t: Target, at: number): void {
  const o = t.block * BLOCK_SIZE
  const blk = buf.subarray(o, o + BLOCK_SIZE)
  switch (t.seal) {
    case 'sb': blk.writeUInt32LE(crc32(blk, 0, 0xfc), 0xfc); break
    case 'jsb':
      blk.writeUInt32LE(crc32(blk, 0, 0x1fc), 0x1fc)
      blk.writeUInt32LE(crc32(blk, 0, BLOCK_SIZE - 4), BLOCK_SIZE - 4)
      break
    case 'tail': blk.writeUInt32LE(crc32(blk, 0, BLOCK_SIZE - 4), BLOCK_SIZE - 4); break
    case 'hdr': blk.writeUInt32LE(crc32(blk, 16, BLOCK_SIZE, crc32(blk, 0, 12)), 12); break
    case 'inodes': {
      const s = Math.floor(at / INODE_SIZE) * INODE_SIZE
      if (blk.readUInt16LE(s) !== 0) blk.writeUInt32LE(crc32(blk, s, s + 0xfc), s + 0xfc)
      break
    }
    case 'filesets': {
      const s = Math.floor(at / FILESET_RECORD_SIZE) * FILESET_RECORD_SIZE
      if (blk.readUInt32LE(s) !== 0) blk.writeUInt32LE(crc32(blk, s, s + 0xfc), s + 0xfc)
      break
    }
    case 'none': break
  }
}

const INTERESTING = [0, 1, 2, 3, 7, 8, 15, 16, 255, 256, 4095, 4096, 65535, 65536, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff]

/** Applies 1-3 random mutations to `buf`; returns their description (for replay messages). */
export function mutate(buf: Buffer, targets: Target[], rnd: () => number): string[] {
  const pick = <T>(a: T[]): T => a[Math.floor(rnd() * a.length)]
  const done: string[] = []
  const n = 1 + Math.floor(rnd() * 3)
  for (let m = 0; m < n; m++) {
    const r = rnd()
    if (r < 0.05) {
      // A random data-area (or any) block, not only metadata.
      const b = Math.floor(rnd() * (buf.length / BLOCK_SIZE))
      const at = Math.floor(rnd() * BLOCK_SIZE)
      buf[b * BLOCK_SIZE + at] ^= 1 << Math.floor(rnd() * 8)
      done.push(`bitflip block ${b} byte ${at}`)
      continue
    }
    const t = pick(targets)
    const o = t.block * BLOCK_SIZE
    // Mutations land mostly in the part of a block that holds fields.
    const hot = t.seal === 'sb' || t.seal === 'jsb' ? 0x100 : t.seal === 'inodes' || t.seal === 'filesets' ? BLOCK_SIZE : rnd() < 0.6 ? 256 : BLOCK_SIZE
    if (r < 0.25) {
      const at = Math.floor(rnd() * hot)
      buf[o + at] ^= 1 << Math.floor(rnd() * 8)
      done.push(`bitflip ${t.what} (block ${t.block}) byte ${at}, not resealed`)
    } else if (r < 0.8) {
      const size = pick([1, 2, 4, 4, 8])
      const at = Math.floor(rnd() * (hot - size) / size) * size
      const v = rnd() < 0.7 ? pick(INTERESTING) : Math.floor(rnd() * 2 ** 32)
      const cur = size === 8 ? Number(buf.readBigUInt64LE(o + at) & 0xffffffffn) : buf.readUIntLE(o + at, size)
      const val = rnd() < 0.3 ? cur + pick([-1, 1, 2, -2, 16]) : v
      if (size === 8) buf.writeBigUInt64LE(BigInt.asUintN(64, BigInt(val)), o + at)
      else buf.writeUIntLE(((val % 2 ** (size * 8)) + 2 ** (size * 8)) % 2 ** (size * 8), o + at, size)
      reseal(buf, t, at)
      done.push(`set u${size * 8} at ${t.what} (block ${t.block}) +${at} to ${val}, resealed`)
    } else if (r < 0.9) {
      const at = Math.floor(rnd() * hot)
      buf[o + at] = Math.floor(rnd() * 256)
      reseal(buf, t, at)
      done.push(`random byte at ${t.what} (block ${t.block}) +${at}, resealed`)
    } else {
      const kind = rnd()
      if (kind < 0.35) {
        buf.fill(0, o, o + BLOCK_SIZE)
        done.push(`zeroed ${t.what} (block ${t.block})`)
      } else if (kind < 0.7) {
        const s = pick(targets)
        buf.copy(buf, o, s.block * BLOCK_SIZE, s.block * BLOCK_SIZE + BLOCK_SIZE)
        done.push(`copied ${s.what} (block ${s.block}) over ${t.what} (block ${t.block})`)
      } else {
        for (let i = 0; i < BLOCK_SIZE; i++) buf[o + i] = Math.floor(rnd() * 256)
        if (rnd() < 0.5) reseal(buf, t, 0)
        done.push(`random fill of ${t.what} (block ${t.block})`)
      }
    }
  }
  return done
}

export class FuzzFailure extends Error {}

function tolerate(step: string, work: () => void): void {
  try {
    work()
  } catch (e) {
    if (e instanceof PrismError) return
    const err = e as Error
    throw new FuzzFailure(`${step}: ${err.name}: ${err.message}\n${err.stack?.split('\n').slice(1, 8).join('\n')}`)
  }
}

/**
 * Runs every operation a command runs on an image (ls, stat, cat, df, fileset list, cp out,
 * clone, fsck, fsck --repair, fsck again). Throws FuzzFailure on a finding.
 */
export function execute(img: string, scratch: string): {fsck: number, repaired: number | null} {
  let first = -1
  let repaired: number | null = null
  tolerate('fsck', () => {
    const r = fsckImage(img, {repair: false})
    first = r.exitCode
    if (![0, 4, 8].includes(r.exitCode)) throw new FuzzFailure(`fsck without repair exited ${r.exitCode}`)
  })
  tolerate('read (ls, stat, cat, df, fileset list)', () => withImage(img, {write: false}, (vol) => {
    void vol.sb.freeBlocks
    for (const f of listFilesets(vol)) {
      tolerate('fileset list', () => { filesetSpace(vol, f) })
      const ns = namespace(vol, f.name)
      const seen = new Set<number>()
      const walk = (dir: string, depth: number) => {
        for (const e of ns.readdir(dir)) {
          const p = (dir === '/' ? '' : dir) + '/' + e.name
          tolerate(`stat/cat ${f.name}:${p}`, () => {
            const st = ns.stat(p)
            if (st.type === 'dir') enterDir(seen, st.ino, p)
            if (st.type === 'dir' && depth < 20) walk(p, depth + 1)
            else if (st.type === 'symlink') ns.readlink(p)
            else if (st.type === 'file' && st.size < 16 * 1024 * 1024) ns.readFile(p)
            for (const x of ns.listXattrs(p)) void ns.getXattr(p, x.name)
          })
        }
      }
      tolerate(`ls -R ${f.name}:/`, () => walk('/', 0))
    }
  }))
  const out = path.join(scratch, 'out')
  fs.rmSync(out, {recursive: true, force: true})
  tolerate('cp -r out', () => withImage(img, {write: false}, (vol) => {
    const first = listFilesets(vol)[0]
    if (first) copy(vol, [{kind: 'image', fileset: first.name, path: '/'}], {kind: 'host', path: out}, {recursive: true})
  }))
  tolerate('clone', () => withImage(img, {write: true}, (vol) => {
    const first = listFilesets(vol)[0]
    if (first) clone(vol, {fileset: first.name, path: '/'}, {fileset: 'fuzz-clone'})
  }))
  tolerate('fsck --repair', () => {
    const r = fsckImage(img, {repair: true})
    repaired = r.exitCode
    if (![0, 1, 4, 8].includes(r.exitCode)) throw new FuzzFailure(`fsck --repair exited ${r.exitCode}`)
    if (r.exitCode === 8) return
    const again = fsckImage(img, {repair: true})
    const unfixable = r.problems.some((p) => !p.fixable)
    if (again.exitCode !== 0 && !(unfixable && again.exitCode === 4)) {
      throw new FuzzFailure(`second fsck --repair exited ${again.exitCode} after ${r.exitCode}:\n${again.problems.map((p) => `${p.code} ${p.where}: ${p.message}`).slice(0, 10).join('\n')}\nfirst run:\n${r.problems.map((p) => `${p.code} ${p.where}: ${p.message}${p.fixed ? ' [fixed]' : ''}`).slice(0, 20).join('\n')}\n${r.notes.join('\n')}`)
    }
  })
  void first
  return {fsck: first, repaired}
}
