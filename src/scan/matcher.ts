// The streaming matcher: one pass over a file's content feeds the hash signatures
// (md5/sha1/sha256, computed only when some signature has the file's size) and the body
// signatures. A body signature is split at its jumps into parts (bytes with `??`); each
// part is found through its longest fixed run (the anchor) with Buffer.indexOf, once per
// distinct anchor and window, and verified around it. Between chunks only the last
// (longest part - 1) bytes are kept, so a file of any size is matched in constant memory;
// the jumps between parts are followed through the end positions of earlier parts.
import {minOf, pushAll} from '../arrays.js'
import type {Hash} from 'node:crypto'
import {crypto} from '../lazy.js'
import type {HashAlgo, HashDb} from './hashdb.js'
import type {BodySig, Part, SignatureSet} from './signatures.js'

interface AnchorUse {
  sig: number
  part: number
}

interface Anchor {
  bytes: Buffer
  /** users by part index: level 0 is searched always, the others once a signature has started */
  uses: AnchorUse[][]
}

/** Start positions of parts whose offset range is at most this wide are checked directly. */
const DIRECT_RANGE = 64


/**
 * Wu-Manber search for many anchors in one pass: a shift table over byte pairs lets the
 * scan skip up to (shortest anchor - 1) bytes per step on data that holds none of them.
 * Anchors of one byte are left to Buffer.indexOf.
 */
class MultiSearch {
  readonly m: number
  private readonly shift = new Uint8Array(65536)
  private readonly bucket = new Map<number, number[]>()

  constructor(private readonly anchors: Buffer[], readonly ids: number[]) {
    this.m = minOf(32, anchors.map((a) => a.length))
    const m = this.m
    this.shift.fill(m - 1)
    anchors.forEach((a, k) => {
      for (let j = 0; j <= m - 2; j++) {
        const h = (a[j] << 8) | a[j + 1]
        const sh = m - 2 - j
        if (sh < this.shift[h]) this.shift[h] = sh
      }
      const h = (a[m - 2] << 8) | a[m - 1]
      const l = this.bucket.get(h)
      if (l) l.push(k)
      else this.bucket.set(h, [k])
    })
  }

  /** Calls found(k, i) for every anchor k starting at i >= from, in increasing i. */
  search(win: Buffer, from: number, found: (k: number, i: number) => void): void {
    const m = this.m
    const shift = this.shift
    const n = win.length
    let pos = from + m - 2 // index of the last pair of the m-byte window starting at pos - m + 2
    while (pos + 1 < n) {
      const h = (win[pos] << 8) | win[pos + 1]
      const sh = shift[h]
      if (sh > 0) { pos += sh; continue }
      const start = pos - m + 2
      for (const k of this.bucket.get(h)!) {
        const a = this.anchors[k]
        if (start + a.length > n) continue
        let j = 0
        while (j < a.length && win[start + j] === a[j]) j++
        if (j === a.length) found(k, start)
      }
      pos++
    }
  }
}

export class Matcher {
  readonly bodies: BodySig[]
  readonly anchors: Anchor[] = []
  /** anchor index of each (sig, part) */
  readonly anchorOf: number[][] = []
  /** longest part: carry-over between chunks is this minus one */
  readonly maxPart: number
  /** detections by hash, and the false-positive list (a file whose hash is there is clean) */
  private readonly hashes: HashDb
  private readonly allow: HashDb
  /** level-0 anchors of signatures whose first part may be anywhere (searched in every window) */
  readonly level0: number[]
  /** one-pass search of the level-0 anchors of wide signatures, when there are several */
  readonly multi: MultiSearch | null
  /**
   * Whether some part of some body signature matches where every byte is zero (its fixed
   * bytes are all 00). When none does, an occurrence overlaps data that is not zero, and a
   * long run of zeros (a hole) need only be matched at its two ends (FileScan.feedZeros).
   */
  readonly zeroMatch: boolean

  constructor(set: SignatureSet) {
    this.bodies = set.bodies
    const byKey = new Map<string, number>()
    let maxPart = 1
    this.bodies.forEach((sig, si) => {
      this.anchorOf.push(sig.parts.map((p, pi) => {
        maxPart = Math.max(maxPart, p.bytes.length)
        const key = p.anchor.toString('latin1')
        let ai = byKey.get(key)
        if (ai === undefined) {
          ai = this.anchors.length
          byKey.set(key, ai)
          this.anchors.push({bytes: p.anchor, uses: []})
        }
        const a = this.anchors[ai]
        while (a.uses.length <= pi) a.uses.push([])
        a.uses[pi].push({sig: si, part: pi})
        return ai
      }))
    })
    this.maxPart = maxPart
    this.level0 = []
    this.anchors.forEach((a, ai) => { if (a.uses[0]?.length) this.level0.push(ai) })
    // Level-0 anchors of signatures that may start anywhere (or in a wide range) are found
    // together in one pass when there are several of them.
    const wideIds = this.level0.filter((ai) => this.anchors[ai].bytes.length >= 2 && this.anchors[ai].uses[0].some((u) => {
      const o = this.bodies[u.sig].offset
      return o.kind === 'any' || o.shift > DIRECT_RANGE
    }))
    this.multi = wideIds.length >= 2 ? new MultiSearch(wideIds.map((ai) => this.anchors[ai].bytes), wideIds) : null
    this.hashes = set.hashes
    this.allow = set.allow
    this.zeroMatch = this.bodies.some((sig) => sig.parts.some((p) => {
      for (let j = 0; j < p.bytes.length; j++) if (p.mask[j] && p.bytes[j] !== 0) return false
      return true
    }))
  }

  /** The digests worth computing for a file of this size (for a detection or the false-positive list). */
  algosFor(size: number): HashAlgo[] {
    const out = this.hashes.algosFor(size)
    for (const a of this.allow.algosFor(size)) if (!out.includes(a)) out.push(a)
    return out
  }

  hashMatches(algo: HashAlgo, digest: Buffer, size: number): string[] {
    return this.hashes.lookup(algo, digest, size)
  }

  /** Is a file with this digest and size on the false-positive list? */
  allowed(algo: HashAlgo, digest: Buffer, size: number): boolean {
    return this.allow.lookup(algo, digest, size).length > 0
  }

  /** A matcher for one file of `size` bytes. */
  start(size: number): FileScan {
    return new FileScan(this, size)
  }
}

function verify(p: Part, win: Buffer, s: number): boolean {
  const b = p.bytes
  const m = p.mask
  const aEnd = p.anchorOff + p.anchor.length
  for (let j = 0; j < b.length; j++) {
    if (j === p.anchorOff) { j = aEnd - 1; continue }
    if (m[j] && win[s + j] !== b[j]) return false
  }
  return true
}

/** Chain state of a started signature: end positions of each matched part. */
interface SigState {
  /** ends[i]: absolute end offsets of valid occurrences of part i (ascending) */
  ends: number[][]
}

/** Zeros fed for holes (never written to). */
const ZEROS = Buffer.alloc(1024 * 1024)

/** ClamAV does not scan a file of this many bytes or fewer: nothing is found in it. */
export const MIN_SCANNED_SIZE = 6

export class FileScan {
  private carry: Buffer | null = null
  private pos = 0
  private readonly hashes: Array<{algo: HashAlgo, h: Hash}> = []
  private readonly done: Uint8Array
  private readonly states = new Map<number, SigState>()
  readonly found: string[] = []
  /** per window: anchor positions (window-relative), computed on demand */
  private cache = new Map<number, number[]>()

  private readonly tiny: boolean

  constructor(private readonly m: Matcher, private readonly size: number) {
    this.tiny = size < MIN_SCANNED_SIZE
    if (!this.tiny) for (const algo of m.algosFor(size)) this.hashes.push({algo, h: crypto().createHash(algo)})
    this.done = new Uint8Array(m.bodies.length)
  }

  /**
   * Whether the rest of the content can change the verdict: false once no digest is
   * computed and every body signature is decided (found, or out of reach), or for a file too
   * small to be scanned. The caller may then stop reading.
   */
  wantsData(): boolean {
    if (this.hashes.length > 0) return true
    if (this.tiny) return false
    for (let si = 0; si < this.done.length; si++) if (!this.done[si]) return true
    return false
  }

  /**
   * `n` bytes of zeros (a hole), as feed() of them would do. The digests get every byte (from
   * a zero buffer, nothing read). When no signature part matches all zeros (Matcher.zeroMatch)
   * an occurrence of any part overlaps data that is not zero, so only the hole's first
   * (longest part) bytes are matched, for parts that begin before the hole; its end is kept as
   * the carry-over (zeros) for parts that end after it; the middle, where nothing can match
   * whatever the offsets, is passed over. Otherwise every zero is matched.
   */
  feedZeros(n: number): void {
    for (const x of this.hashes) for (let left = n; left > 0; left -= ZEROS.length) x.h.update(ZEROS.subarray(0, Math.min(left, ZEROS.length)))
    if (this.m.bodies.length === 0 || this.tiny || !this.wantsBodies()) { this.pos += n; this.carry = null; return }
    const edge = this.m.maxPart
    if (this.m.zeroMatch || n <= 2 * edge) {
      for (let left = n; left > 0; left -= ZEROS.length) this.feedBody(ZEROS.subarray(0, Math.min(left, ZEROS.length)))
      return
    }
    this.feedBody(ZEROS.subarray(0, edge))
    this.pos += n - edge
    const k = this.m.maxPart - 1
    this.carry = k > 0 ? ZEROS.subarray(0, k) : null
  }

  private wantsBodies(): boolean {
    for (let si = 0; si < this.done.length; si++) if (!this.done[si]) return true
    return false
  }

  feed(chunk: Buffer): void {
    for (const x of this.hashes) x.h.update(chunk)
    if (this.m.bodies.length === 0 || this.tiny) return
    this.feedBody(chunk)
  }

  private feedBody(chunk: Buffer): void {
    let win: Buffer
    let newFrom: number
    if (this.carry && this.carry.length > 0) {
      win = Buffer.concat([this.carry, chunk])
      newFrom = this.carry.length
    } else {
      win = chunk
      newFrom = 0
    }
    const base = this.pos - newFrom
    this.scanWindow(win, base, newFrom)
    this.pos += chunk.length
    const k = this.m.maxPart - 1
    this.carry = k > 0 ? Buffer.from(win.subarray(Math.max(0, win.length - k))) : null
  }

  /**
   * Names of everything found (hash matches after body matches), in order; nothing for a file
   * on the false-positive list (.fp, .sfp), or of fewer than MIN_SCANNED_SIZE bytes, as ClamAV.
   */
  finish(): string[] {
    if (this.tiny) return []
    const digests = this.hashes.map((x) => ({algo: x.algo, d: x.h.digest()}))
    if (digests.some((x) => this.m.allowed(x.algo, x.d, this.size))) return []
    for (const x of digests) pushAll(this.found, this.m.hashMatches(x.algo, x.d, this.size))
    return this.found
  }

  /** Positions of anchor `ai` in the window that may start a part ending in the new data. */
  private positions(ai: number, win: Buffer, newFrom: number): number[] {
    let list = this.cache.get(ai)
    if (list) return list
    list = []
    const a = this.m.anchors[ai].bytes
    // A part ends in the new data when it ends after newFrom; its anchor then starts at or
    // after newFrom - (longest part) + 1.
    let i = Math.max(0, newFrom - this.m.maxPart + 1)
    for (;;) {
      i = win.indexOf(a, i)
      if (i < 0) break
      list.push(i)
      i++
    }
    this.cache.set(ai, list)
    return list
  }

  private scanWindow(win: Buffer, base: number, newFrom: number): void {
    this.cache.clear()
    const bodies = this.m.bodies
    const multi = this.m.multi
    if (multi) {
      const lists = multi.ids.map((ai) => { const l: number[] = []; this.cache.set(ai, l); return l })
      multi.search(win, Math.max(0, newFrom - this.m.maxPart + 1), (k, i) => { lists[k].push(i) })
    }
    // Level 0: first parts. Signatures with a narrow offset range are checked in place.
    for (let si = 0; si < bodies.length; si++) {
      if (this.done[si]) continue
      const sig = bodies[si]
      const range = this.startRange(sig)
      if (range === null) { this.done[si] = 2; continue }
      if (range.hi - range.lo > DIRECT_RANGE) continue
      const p = sig.parts[0]
      const lo = Math.max(range.lo - base, 0, newFrom - p.bytes.length + 1)
      const hi = Math.min(range.hi - base, win.length - p.bytes.length)
      for (let s = lo; s <= hi; s++) {
        if (win.compare(p.anchor, 0, p.anchor.length, s + p.anchorOff, s + p.anchorOff + p.anchor.length) === 0 && verify(p, win, s)) {
          this.partFound(si, 0, base + s + p.bytes.length)
          if (this.done[si]) break
        }
      }
    }
    for (const ai of this.m.level0) {
      const uses = this.m.anchors[ai].uses[0]
      let pending = false
      for (const u of uses) if (!this.done[u.sig] && this.wide(u.sig)) { pending = true; break }
      if (!pending) continue
      const pos = this.positions(ai, win, newFrom)
      if (pos.length === 0) continue
      for (const u of uses) {
        if (this.done[u.sig] || !this.wide(u.sig)) continue
        const sig = bodies[u.sig]
        const p = sig.parts[0]
        const range = this.startRange(sig)!
        for (const a of pos) {
          const s = a - p.anchorOff
          if (s < 0 || s + p.bytes.length <= newFrom || s + p.bytes.length > win.length) continue
          const abs = base + s
          if (abs < range.lo || abs > range.hi) continue
          if (!verify(p, win, s)) continue
          this.partFound(u.sig, 0, abs + p.bytes.length)
          if (this.done[u.sig]) break
        }
      }
    }
    // Later parts, for started signatures only, in part order.
    if (this.states.size === 0) return
    for (const [si, st] of this.states) {
      if (this.done[si]) continue
      const sig = bodies[si]
      for (let pi = 1; pi < sig.parts.length && !this.done[si]; pi++) {
        if (st.ends[pi - 1].length === 0) break
        const p = sig.parts[pi]
        const gap = sig.gaps[pi - 1]
        const pos = this.positions(this.m.anchorOf[si][pi], win, newFrom)
        for (const a of pos) {
          const s = a - p.anchorOff
          if (s < 0 || s + p.bytes.length <= newFrom || s + p.bytes.length > win.length) continue
          const abs = base + s
          if (!this.chainReaches(st.ends[pi - 1], abs, gap.min, gap.max)) continue
          if (!verify(p, win, s)) continue
          this.partFound(si, pi, abs + p.bytes.length)
          if (this.done[si]) break
        }
      }
      // Forget ends no later part can use any more.
      const horizon = this.pos + win.length - newFrom - this.m.maxPart
      for (let pi = 0; pi < sig.parts.length - 1; pi++) {
        const max = sig.gaps[pi].max
        if (max === Infinity) continue
        const e = st.ends[pi]
        let drop = 0
        while (drop < e.length && e[drop] + max < horizon) drop++
        if (drop > 0) e.splice(0, drop)
      }
    }
  }

  private wide(si: number): boolean {
    const r = this.startRange(this.m.bodies[si])
    return r !== null && r.hi - r.lo > DIRECT_RANGE
  }

  /** Absolute range of the signature's start allowed by its offset; null if none is possible. */
  private startRange(sig: BodySig): {lo: number, hi: number} | null {
    const o = sig.offset
    let lo: number
    let hi: number
    if (o.kind === 'any') { lo = 0; hi = Infinity }
    else if (o.kind === 'abs') { lo = o.start; hi = o.start + o.shift }
    else {
      // As ClamAV (cli_caloff): EOF-n of a file shorter than n is no offset at all, whatever
      // the shift (the start is not clamped to 0).
      if (this.size < o.back) return null
      lo = this.size - o.back
      hi = lo + o.shift
    }
    // (ClamAV's offset_max is offset_min + shift in a uint32: past 2^32 - 1 it wraps below the
    // start, and no offset is in the range)
    if (o.kind !== 'any' && hi > 0xffff_ffff) return null
    if (hi < 0 || lo > this.size) return null
    return {lo: Math.max(lo, 0), hi}
  }

  /** Is there an end e of the previous part with min <= s - e <= max? */
  private chainReaches(ends: number[], s: number, min: number, max: number): boolean {
    if (max === Infinity) return ends[0] + min <= s
    // ends ascend: find one in [s - max, s - min]
    for (let i = ends.length - 1; i >= 0; i--) {
      const e = ends[i]
      if (e > s - min) continue
      return e >= s - max
    }
    return false
  }

  private partFound(si: number, pi: number, end: number): void {
    const sig = this.m.bodies[si]
    if (pi === sig.parts.length - 1) {
      this.done[si] = 1
      this.found.push(sig.name)
      return
    }
    let st = this.states.get(si)
    if (!st) this.states.set(si, (st = {ends: sig.parts.map(() => [])}))
    const e = st.ends[pi]
    // With an unbounded jump next, the earliest end is all that counts.
    if (sig.gaps[pi].max === Infinity) { if (e.length === 0) e.push(end) }
    else if (e.length === 0 || e[e.length - 1] < end) e.push(end)
  }
}
