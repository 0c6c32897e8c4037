// fsck pass 4: the reference-count table against the claims counted in passes 1-3 (as
// e2fsck pass 5 compares bitmaps), then the superblock's free block and inode counters.
// Wrong counters are rewritten to the computed value; neighbouring blocks with the same
// kind of error are reported as one range. It never looks at inodes or directories.
import {BLOCK_SIZE, REFCOUNTS_PER_BLOCK, REFCOUNT_MAX} from '../format/constants.js'
import {crc32} from '../format/checksum.js'
import {refcountBlockZero, sealRefcountBlock} from '../format/refcount.js'
import {INCOMPAT_SPARSE_REFCOUNT} from '../format/superblock.js'
import {CLAIM_CHUNK, T_FREE, type FsckContext} from './context.js'
import type {ProblemCode} from './problems.js'

const CHUNK = 256

interface Run {
  code: ProblemCode
  first: number
  last: number
  have: number
  want: number
}

/** The first s in [from, limit) where the table's byte differs from the computed count; limit if none. */
function firstMismatch(buf: Buffer, bo: number, refs: Uint16Array, base: number, from: number, limit: number): number {
  let s = from
  while (s < limit && buf[bo + s] === refs[base + s]) s++
  return s
}

/** The first s in [from, limit) whose byte is not zero; limit if none (a table block with no claims). */
function firstNonZero(buf: Buffer, bo: number, from: number, limit: number): number {
  let s = from
  while (s < limit && buf[bo + s] === 0) s++
  return s
}

const NO_REFS = new Uint16Array(CLAIM_CHUNK)
const ZEROS = new Uint8Array(REFCOUNTS_PER_BLOCK)

export function pass4(ctx: FsckContext): {freeBlocks: number, freeInodes: number} {
  const sb = ctx.sb
  const claims = ctx.claims
  // Blocks that maps still reference on disk until rebuild.ts rewrites them stay counted.
  for (const rw of ctx.rewrites.values()) {
    for (const e of rw.released) {
      for (let i = e.p - sb.dataStart; i < e.p - sb.dataStart + e.n; i++) {
        const r = claims.ref(i)
        if (r !== 0xffff) claims.setRef(i, r + 1)
      }
    }
  }
  const sparse = (sb.incompat & INCOMPAT_SPARSE_REFCOUNT) !== 0
  const tables = Math.ceil(sb.dataBlocks / REFCOUNTS_PER_BLOCK)
  const buf = Buffer.allocUnsafe(CHUNK * BLOCK_SIZE)
  // Table blocks that hold something: the rest are holes (all zeros) and are not read.
  const withData = new Uint8Array(sb.refcountBlocks)
  for (const [a, b] of ctx.vol.dataRunsOf(sb.refcountStart, sb.refcountBlocks)) withData.fill(1, a - sb.refcountStart, b - sb.refcountStart)
  let run: Run | null = null
  const flush = () => {
    if (!run) return
    const r = run
    run = null
    const n = r.last - r.first + 1
    const where = n === 1 ? `block ${r.first}` : `blocks ${r.first}-${r.last}`
    const what = r.code === 'BLOCK_LEAKED'
      ? (n === 1 ? `block is counted ${r.have} times but nothing references it` : `${n} blocks are counted but nothing references them`)
      : (n === 1 ? `block is counted ${r.have} times but has ${r.want} references` : `${n} blocks are counted ${r.code === 'REFCOUNT_HIGH' ? 'too high' : 'too low'} (block ${r.first}: counted ${r.have}, ${r.want} references)`)
    const p = ctx.report(r.code, where, {detail: what})
    ctx.fixed(p)
  }
  // What a table block must hold where no count passes REFCOUNT_MAX: the counts clamped to a
  // byte (Uint8ClampedArray's set), compared with the block in one native call; a block
  // that differs is then walked count by count.
  const clamped = new Uint8ClampedArray(REFCOUNTS_PER_BLOCK)
  const expect = new Uint8Array(clamped.buffer)
  for (let t0 = 0; t0 < sb.refcountBlocks; t0 += CHUNK) {
    const n = Math.min(CHUNK, sb.refcountBlocks - t0)
    let any = false
    for (let j = 0; j < n && !any; j++) if (withData[t0 + j]) any = true
    // A stretch of holes in an image whose holes read as free, with nothing claimed there, is right as it is.
    if (!any && sparse) {
      let claimed = false
      for (let j = 0; j < n && !claimed; j += 16) if (claims.peek(Math.floor((t0 + j) / 16))) claimed = true
      if (!claimed) {
        ctx.progress('pass 4: reference counts', t0 + n, sb.refcountBlocks)
        continue
      }
    }
    if (any) ctx.readBlocks(sb.refcountStart + t0, n, buf)
    else buf.fill(0, 0, n * BLOCK_SIZE)
    for (let j = 0; j < n; j++) {
      const t = t0 + j
      const bo = j * BLOCK_SIZE
      if (any && !withData[t]) buf.fill(0, bo, bo + BLOCK_SIZE) // a hole reads as zero, whatever the read returned
      const base = t * REFCOUNTS_PER_BLOCK
      const limit = t < tables ? Math.min(REFCOUNTS_PER_BLOCK, sb.dataBlocks - base) : 0
      // The counts of this table block's data blocks: a view into their claim chunk.
      const chunk = limit > 0 ? claims.peek(Math.floor(base / CLAIM_CHUNK)) : undefined
      const refs = chunk ?? NO_REFS
      const rbase = base % CLAIM_CHUNK
      const crcOk = buf.readUInt32LE(bo + REFCOUNTS_PER_BLOCK) === crc32(buf, bo, bo + REFCOUNTS_PER_BLOCK) ||
        (sparse && refcountBlockZero(buf.subarray(bo, bo + BLOCK_SIZE)))
      let wrong = false
      if (!crcOk) {
        flush()
        const p = ctx.report('REFCOUNT_BLOCK_CRC', `refcount block ${t}`)
        wrong = true
        ctx.fixed(p)
      } else {
        // Most blocks agree with the counts: where none is past what a byte holds, the whole
        // block is compared in one call; otherwise, or where it differs, skip from one
        // disagreement to the next (a count over 255 never equals a byte).
        let agree = false
        if (!chunk) agree = buf.compare(ZEROS, 0, limit, bo, bo + limit) === 0
        else if (!claims.high(Math.floor(base / CLAIM_CHUNK))) {
          clamped.set(refs.subarray(rbase, rbase + limit))
          agree = buf.compare(expect, 0, limit, bo, bo + limit) === 0
        }
        const next = chunk ? (s: number) => firstMismatch(buf, bo, refs, rbase, s, limit) : (s: number) => firstNonZero(buf, bo, s, limit)
        for (let s = agree ? limit : next(0); s < limit; s = next(s + 1)) {
          const want = refs[rbase + s]
          const have = buf[bo + s]
          const w8 = want > REFCOUNT_MAX ? REFCOUNT_MAX : want
          if (want > REFCOUNT_MAX) { flush(); ctx.report('REFCOUNT_OVERFLOW', `block ${sb.dataStart + base + s}`, {refs: want}) }
          if (have === w8) continue
          wrong = true
          const code: ProblemCode = w8 === 0 ? 'BLOCK_LEAKED' : have > w8 ? 'REFCOUNT_HIGH' : 'REFCOUNT_LOW'
          const block = sb.dataStart + base + s
          if (run && run.code === code && run.last === block - 1) run.last = block
          else {
            flush()
            run = {code, first: block, last: block, have, want: w8}
          }
        }
        let pad = false
        for (let s = limit; s < REFCOUNTS_PER_BLOCK; s++) if (buf[bo + s] !== 0) { pad = true; break }
        if (pad) {
          flush()
          const p = ctx.report('REFCOUNT_PADDING', `refcount block ${t}`)
          wrong = true
          ctx.fixed(p)
        }
      }
      if (wrong && ctx.repair) {
        const m = ctx.vol.store.getMut(sb.refcountStart + t)
        m.fill(0)
        for (let s = 0; s < limit; s++) {
          const want = refs[rbase + s]
          m[s] = want > REFCOUNT_MAX ? REFCOUNT_MAX : want
        }
        sealRefcountBlock(m)
        ctx.vol.forgetFreeRuns()
        ctx.maybeCommit()
      }
    }
    ctx.progress('pass 4: reference counts', Math.min(t0 + n, sb.refcountBlocks), sb.refcountBlocks)
  }
  flush()

  // Free blocks are those nothing references, whatever the table says.
  const freeBlocks = sb.dataBlocks - claims.used
  let freeInodes = sb.inodeCount
  for (let ino = 1; ino < ctx.inoEnd; ino++) if (ctx.itype[ino] !== T_FREE) freeInodes--
  const vsb = ctx.vol.sb
  if (ctx.sbFreeBlocks !== freeBlocks) {
    const p = ctx.report('FREE_BLOCKS_COUNT', 'superblock', {have: ctx.sbFreeBlocks, want: freeBlocks})
    if (ctx.repair) { vsb.freeBlocks = freeBlocks; ctx.vol.markSbDirty() }
    ctx.fixed(p)
  }
  if (ctx.sbFreeInodes !== freeInodes) {
    const p = ctx.report('FREE_INODES_COUNT', 'superblock', {have: ctx.sbFreeInodes, want: freeInodes})
    if (ctx.repair) { vsb.freeInodes = freeInodes; ctx.vol.markSbDirty() }
    ctx.fixed(p)
  }
  ctx.progress('pass 4: reference counts', sb.refcountBlocks, sb.refcountBlocks, true)
  return {freeBlocks, freeInodes}
}
