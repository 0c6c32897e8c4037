// Hash signatures by digest: the detections of .hdb/.hsb and the false-positive lists of
// .fp/.sfp. A ClamAV main database holds millions of them, so they are kept in typed arrays
// (digests, sizes, name offsets) behind an open-addressing table, not as one object each: a
// few dozen bytes a signature. Pure data structure: no I/O, no parsing.

export type HashAlgo = 'md5' | 'sha1' | 'sha256'

export const DIGEST_LEN: Record<HashAlgo, number> = {md5: 16, sha1: 20, sha256: 32}

/** Size field value meaning "any size" (ClamAV's `*`); ClamAV refuses sizes >= 0xffffffff. */
const ANY = 0xffff_ffff

/** One digest algorithm's entries. Several entries may share a digest (other sizes, names). */
class DigestTable {
  count = 0
  private digests: Buffer
  private sizes: Uint32Array
  private nameOff: Uint32Array
  private nameLen: Uint32Array
  /** next (earlier) entry with the same digest, -1 for none */
  private next: Int32Array
  /** open addressing: the first entry of a digest, plus one; 0 is an empty slot */
  private slots = new Int32Array(1024)
  private names: Buffer = Buffer.alloc(1 << 16)
  private namesUsed = 0
  /** the sizes some entry names, and whether one takes any size */
  readonly sizeSet = new Set<number>()
  anySize = false

  constructor(readonly len: number) {
    this.digests = Buffer.alloc(len * 256)
    this.sizes = new Uint32Array(256)
    this.nameOff = new Uint32Array(256)
    this.nameLen = new Uint32Array(256)
    this.next = new Int32Array(256)
  }

  private grow(): void {
    const n = this.sizes.length * 2
    const d = Buffer.alloc(this.len * n)
    this.digests.copy(d)
    this.digests = d
    const re = <T extends Uint32Array | Int32Array>(a: T, make: (n: number) => T): T => { const b = make(n); b.set(a); return b }
    this.sizes = re(this.sizes, (k) => new Uint32Array(k))
    this.nameOff = re(this.nameOff, (k) => new Uint32Array(k))
    this.nameLen = re(this.nameLen, (k) => new Uint32Array(k))
    this.next = re(this.next, (k) => new Int32Array(k))
  }

  private home(d: Buffer, off: number): number {
    return d.readUInt32LE(off) & (this.slots.length - 1)
  }

  /** The slot holding digest `d` (at `off`), or the empty slot where it would go. */
  private find(d: Buffer, off: number): number {
    const mask = this.slots.length - 1
    for (let s = this.home(d, off); ; s = (s + 1) & mask) {
      const e = this.slots[s]
      if (e === 0 || this.digests.compare(d, off, off + this.len, (e - 1) * this.len, e * this.len) === 0) return s
    }
  }

  private rehash(): void {
    const old = this.slots
    this.slots = new Int32Array(old.length * 2)
    for (const e of old) if (e !== 0) this.slots[this.find(this.digests, (e - 1) * this.len)] = e
  }

  /**
   * Adds an entry. Entries with the same digest and size are all kept (ClamAV keeps one of
   * them, which one depending on the order its sort leaves them in: prism names them all).
   */
  add(hex: string, size: number | null, name: string): void {
    const sz = size ?? ANY
    if (this.count === this.sizes.length) this.grow()
    if ((this.count + 1) * 2 > this.slots.length) this.rehash()
    const i = this.count++
    this.digests.write(hex, i * this.len, this.len, 'hex')
    this.sizes[i] = sz
    this.setName(i, name)
    if (size === null) this.anySize = true
    else this.sizeSet.add(size)
    const s = this.find(this.digests, i * this.len)
    this.next[i] = this.slots[s] - 1 // chain the earlier entries of this digest behind it
    this.slots[s] = i + 1
  }

  private setName(e: number, name: string): void {
    const nb = Buffer.byteLength(name)
    while (this.namesUsed + nb > this.names.length) {
      const b = Buffer.alloc(this.names.length * 2)
      this.names.copy(b)
      this.names = b
    }
    this.nameOff[e] = this.namesUsed
    this.nameLen[e] = this.names.write(name, this.namesUsed)
    this.namesUsed += nb
  }

  /** The names for `digest`: those of exactly `size` first, then those of any size (as ClamAV), each in the order added. */
  lookup(digest: Buffer, size: number): string[] {
    const exact: string[] = []
    const any: string[] = []
    for (let e = this.slots[this.find(digest, 0)] - 1; e >= 0; e = this.next[e]) {
      if (this.sizes[e] === size) exact.push(this.names.toString('utf8', this.nameOff[e], this.nameOff[e] + this.nameLen[e]))
      else if (this.sizes[e] === ANY) any.push(this.names.toString('utf8', this.nameOff[e], this.nameOff[e] + this.nameLen[e]))
    }
    return [...exact.reverse(), ...any.reverse()]
  }
}

/** Hash entries of the three algorithms. */
export class HashDb {
  private readonly tables = new Map<HashAlgo, DigestTable>()

  get count(): number {
    let n = 0
    for (const t of this.tables.values()) n += t.count
    return n
  }

  /** `hex` must be the digest of `algo` in hex (checked by the parser). */
  add(algo: HashAlgo, hex: string, size: number | null, name: string): void {
    let t = this.tables.get(algo)
    if (!t) this.tables.set(algo, (t = new DigestTable(DIGEST_LEN[algo])))
    t.add(hex, size, name)
  }

  /** The algorithms worth computing for a file of `size` bytes. */
  algosFor(size: number): HashAlgo[] {
    const out: HashAlgo[] = []
    for (const [algo, t] of this.tables) if (t.anySize || t.sizeSet.has(size)) out.push(algo)
    return out
  }

  lookup(algo: HashAlgo, digest: Buffer, size: number): string[] {
    return this.tables.get(algo)?.lookup(digest, size) ?? []
  }
}
