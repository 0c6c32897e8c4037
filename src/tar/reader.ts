// A streaming tar reader: bytes are pushed in as they come (any chunk size) and each entry
// comes out as its header (pax records, GNU long names and global headers applied) followed
// by its data, placed at its offsets in the file (a sparse entry's regions where they
// belong). Nothing is held but one header and the small records before it: a multi-GiB
// archive passes through in the chunks it was read in. Reads ustar, pax, GNU and v7
// archives; sparse files in every GNU form (old 'S' headers, pax 0.0, 0.1 and 1.0). Never
// touches the image: what to do with an entry is the sink's business (src/tar/import.ts).
import {pushAll} from '../arrays.js'
import {
  TAR_BLOCK, TarFormatError, checkSparseMap, decodeHeader, decodeSparseEntries, decodeXattrKey, isZeroBlock,
  parsePax, parsePaxNumber, parsePaxTime, parseSparseMapText, Sparse10MapReader, type PaxRecord, type SparseRegion, type Time,
} from './codec.js'

export type EntryType = 'file' | 'hardlink' | 'symlink' | 'chardev' | 'blockdev' | 'dir' | 'fifo'

export interface TarEntry {
  /** the member name, as stored (bytes) */
  path: Buffer
  type: EntryType
  /** a typeflag this reader does not know, read as a regular file (as GNU tar does) */
  unknownType?: string
  linkpath: Buffer
  mode: number
  uid: number
  gid: number
  uname: Buffer
  gname: Buffer
  /** the file's size (a sparse file's real size) */
  size: number
  mtime: Time
  atime: Time | null
  ctime: Time | null
  devmajor: number
  devminor: number
  /** extended attributes: SCHILY.xattr.* (GNU tar), LIBARCHIVE.xattr.* (bsdtar), RHT.security.selinux */
  xattrs: Array<{name: Buffer, value: Buffer}>
  /** SCHILY.acl.access / .default, as text */
  aclAccess: string | null
  aclDefault: string | null
  /** the regions holding data, for a sparse entry; null for an ordinary one */
  sparse: SparseRegion[] | null
}

export interface TarSink {
  /** A new entry; its data (if any) follows through data(), then end(). */
  entry(e: TarEntry): void
  /** Bytes of the current entry's file at `offset` (increasing; regions of a sparse file). `chunk` is only valid during the call. */
  data(chunk: Buffer, offset: number): void
  /** The current entry is complete. */
  end(): void
}

type State =
  | {k: 'header'}
  | {k: 'record', kind: 'x' | 'g' | 'L' | 'K' | 'S', need: number, padded: number, parts: Buffer[], got: number}
  | {k: 'map10', parts: Buffer[], got: number, left: number, entry: TarEntry, reader: Sparse10MapReader, done: {map: SparseRegion[], bytes: number} | null}
  | {k: 'data', left: number, padding: number, pos: number, regions: SparseRegion[] | null, ri: number, emit: boolean}
  | {k: 'skip', left: number}
  | {k: 'eof'}

/** The largest pax header or GNU long name this reader keeps in memory. */
const RECORD_MAX = 16 * 1024 * 1024

export class TarReader {
  private state: State = {k: 'header'}
  /** a header block split across pushes */
  private partial = Buffer.alloc(TAR_BLOCK)
  private partialLen = 0
  private pax: PaxRecord[] = []
  private globalPax: PaxRecord[] = []
  private longName: Buffer | null = null
  private longLink: Buffer | null = null
  /** an old GNU sparse header waiting for its extension blocks */
  private pendingS: {h: ReturnType<typeof decodeHeader>, map: SparseRegion[]} | null = null
  private zeroBlocks = 0
  /** bytes consumed so far (for messages) */
  offset = 0
  entries = 0

  constructor(private sink: TarSink) {}

  get finished(): boolean {
    return this.state.k === 'eof'
  }

  /** Pushes bytes; the sink is called for what they complete. */
  push(chunk: Buffer): void {
    let o = 0
    while (o < chunk.length) {
      const s = this.state
      if (s.k === 'eof') return // what follows the end-of-archive blocks is ignored, as GNU tar does
      if (s.k === 'header') {
        let block: Buffer
        let at: number
        if (this.partialLen > 0 || chunk.length - o < TAR_BLOCK) {
          const n = Math.min(TAR_BLOCK - this.partialLen, chunk.length - o)
          chunk.copy(this.partial, this.partialLen, o, o + n)
          this.partialLen += n
          o += n
          this.offset += n
          if (this.partialLen < TAR_BLOCK) return
          this.partialLen = 0
          block = this.partial
          at = 0
        } else {
          block = chunk
          at = o
          o += TAR_BLOCK
          this.offset += TAR_BLOCK
        }
        this.header(block, at)
        continue
      }
      const n = this.consume(s, chunk, o)
      o += n
      this.offset += n
    }
  }

  /** The archive ended: anything unfinished, or a missing end-of-archive block, is a truncated archive. */
  finish(): void {
    const s = this.state
    if (s.k === 'eof') return
    // One zero block is enough (GNU tar reads that with a warning). An archive that stops
    // without one is taken as truncated, even at an entry's boundary: every tar writes it,
    // and an import must not commit half an archive.
    if (s.k === 'header' && this.partialLen === 0 && this.zeroBlocks > 0) {
      this.state = {k: 'eof'}
      return
    }
    throw new TarFormatError(`archive is truncated (at byte ${this.offset})`)
  }

  private consume(s: State, chunk: Buffer, o: number): number {
    switch (s.k) {
      case 'record': {
        const n = Math.min(s.padded - s.got, chunk.length - o)
        const useful = Math.max(0, Math.min(n, s.need - s.got))
        if (useful > 0) s.parts.push(Buffer.from(chunk.subarray(o, o + useful)))
        s.got += n
        if (s.got === s.padded) this.recordDone(s.kind, Buffer.concat(s.parts))
        return n
      }
      case 'map10': {
        // The map of a sparse 1.0 entry, at the start of its data, in whole blocks: read as it
        // comes (each byte once), and its data begins at the block after it.
        const n = Math.min(TAR_BLOCK, chunk.length - o, s.left)
        const piece = Buffer.from(chunk.subarray(o, o + n))
        s.parts.push(piece)
        s.got += n
        s.left -= n
        s.done ??= s.reader.feed(piece)
        const m = s.done
        if (!m) {
          if (s.left === 0 || s.got > 64 * 1024 * 1024) throw new TarFormatError('sparse map runs past the entry')
          return n
        }
        if (m.bytes > s.got) {
          if (s.left === 0) throw new TarFormatError('sparse map runs past the entry')
          return n
        }
        const all = Buffer.concat(s.parts)
        checkSparseMap(m.map, s.entry.size, all.length - m.bytes + s.left)
        s.entry.sparse = m.map
        this.sink.entry(s.entry)
        this.startData(s.entry, all.length - m.bytes + s.left, m.map)
        // Bytes after the map in what was collected are the first data bytes.
        const rest = all.subarray(m.bytes)
        if (rest.length > 0) this.consume(this.state, rest, 0)
        return n
      }
      case 'data': {
        const n = Math.min(s.left + s.padding, chunk.length - o)
        const useful = Math.min(n, s.left)
        if (useful > 0) this.emitData(s, chunk.subarray(o, o + useful))
        s.left -= useful
        s.padding -= n - useful
        if (s.left === 0 && s.padding === 0) {
          this.state = {k: 'header'}
          if (s.emit) this.sink.end()
        }
        return n
      }
      case 'skip': {
        const n = Math.min(s.left, chunk.length - o)
        s.left -= n
        if (s.left === 0) this.state = {k: 'header'}
        return n
      }
      default:
        return chunk.length - o
    }
  }

  /** Hands stored bytes to the sink at their file offsets (through the sparse map). */
  private emitData(s: State & {k: 'data'}, bytes: Buffer): void {
    if (!s.emit) return
    if (!s.regions) {
      this.sink.data(bytes, s.pos)
      s.pos += bytes.length
      return
    }
    let b = 0
    while (b < bytes.length) {
      const r = s.regions[s.ri]
      const into = s.pos - r.offset // bytes of this region already given
      const n = Math.min(r.size - into, bytes.length - b)
      if (n > 0) this.sink.data(bytes.subarray(b, b + n), s.pos)
      b += n
      s.pos += n
      if (s.pos === r.offset + r.size) {
        s.ri++
        while (s.ri < s.regions.length && s.regions[s.ri].size === 0) s.ri++
        if (s.ri < s.regions.length) s.pos = s.regions[s.ri].offset
      }
    }
  }

  private startData(e: TarEntry | null, stored: number, regions: SparseRegion[] | null): void {
    const padding = (TAR_BLOCK - (stored % TAR_BLOCK)) % TAR_BLOCK
    let first = regions
    let ri = 0
    if (regions) {
      while (ri < regions.length && regions[ri].size === 0) ri++
      if (ri >= regions.length) first = null
    }
    this.state = {k: 'data', left: stored, padding, pos: first ? regions![ri].offset : 0, regions: first ? regions : null, ri, emit: e !== null}
    if (stored === 0 && padding === 0) {
      this.state = {k: 'header'}
      if (e) this.sink.end()
    }
  }

  private recordDone(kind: 'x' | 'g' | 'L' | 'K' | 'S', body: Buffer): void {
    this.state = {k: 'header'}
    if (kind === 'x') pushAll(this.pax, parsePax(body))
    else if (kind === 'g') this.globalPax = mergeGlobal(this.globalPax, parsePax(body))
    else if (kind === 'L') this.longName = cut(body)
    else if (kind === 'K') this.longLink = cut(body)
    else {
      // Old GNU sparse extension blocks: 21 entries of 24 bytes, then isextended.
      const p = this.pendingS!
      let more = false
      for (let o = 0; o < body.length; o += TAR_BLOCK) {
        pushAll(p.map, decodeSparseEntries(body, o, 21))
        more = body[o + 504] !== 0
      }
      if (more) this.state = {k: 'record', kind: 'S', need: TAR_BLOCK, padded: TAR_BLOCK, parts: [], got: 0}
      else {
        this.pendingS = null
        this.member(p.h, p.map)
      }
    }
  }

  private header(block: Buffer, at: number): void {
    if (isZeroBlock(block, at)) {
      if (this.pax.length || this.longName || this.longLink) throw new TarFormatError('end of archive right after an extended header')
      if (++this.zeroBlocks >= 2) this.state = {k: 'eof'}
      return
    }
    // A lone zero block inside an archive: GNU tar warns and reads on; so do we (silently).
    this.zeroBlocks = 0
    const h = decodeHeader(block, at)
    const t = String.fromCharCode(h.typeflag)
    const record = (kind: 'x' | 'g' | 'L' | 'K') => {
      if (h.size > RECORD_MAX) throw new TarFormatError(`extended header of ${h.size} bytes is too large`)
      const padded = Math.ceil(h.size / TAR_BLOCK) * TAR_BLOCK
      this.state = {k: 'record', kind, need: h.size, padded, parts: [], got: 0}
      if (padded === 0) this.recordDone(kind, Buffer.alloc(0))
    }
    if (t === 'x' || t === 'X') return record('x')
    if (t === 'g') return record('g')
    if (t === 'L') return record('L')
    if (t === 'K') return record('K')
    if (t === 'V') {
      // A volume label: not a file.
      this.state = {k: 'skip', left: Math.ceil(h.size / TAR_BLOCK) * TAR_BLOCK}
      this.resetPending()
      if (this.state.left === 0) this.state = {k: 'header'}
      return
    }
    if (t === 'M') throw new TarFormatError('multi-volume archives are not supported (a continued file)')
    if (t === 'S') {
      if (h.sparseExtended) {
        this.pendingS = {h, map: h.sparse ?? []}
        this.state = {k: 'record', kind: 'S', need: TAR_BLOCK, padded: TAR_BLOCK, parts: [], got: 0}
        return
      }
      return this.member(h, h.sparse ?? [])
    }
    this.member(h, null)
  }

  private resetPending(): void {
    this.pax = []
    this.longName = null
    this.longLink = null
  }

  /** A file's header with everything before it applied: builds the entry and starts its data. */
  private member(h: ReturnType<typeof decodeHeader>, oldSparse: SparseRegion[] | null): void {
    const recs = [...this.globalPax, ...this.pax]
    const pax = new Map<string, Buffer>()
    for (const r of recs) pax.set(r.key, r.value)
    const t = String.fromCharCode(h.typeflag)
    let type: EntryType
    let unknownType: string | undefined
    switch (t) {
      case '0': case '\0': case '7': case 'S': type = 'file'; break
      case '1': type = 'hardlink'; break
      case '2': type = 'symlink'; break
      case '3': type = 'chardev'; break
      case '4': type = 'blockdev'; break
      case '5': case 'D': type = 'dir'; break
      case '6': type = 'fifo'; break
      default: type = 'file'; unknownType = t
    }
    let path = this.longName ?? h.name
    let linkpath = this.longLink ?? h.linkname
    if (pax.has('path')) path = pax.get('path')!
    if (pax.has('linkpath')) linkpath = pax.get('linkpath')!
    // Old archives mark a directory by a trailing '/' on a regular entry, and GNU tar takes
    // it so whatever the magic ("BSD tar uses the convention that a slash suffix means a
    // directory", for types 0, NUL and 7): so does `tar -tv`.
    if ((t === '0' || t === '\0' || t === '7') && path.length > 0 && path[path.length - 1] === 0x2f) type = 'dir'
    const num = (k: string, v: number) => (pax.has(k) ? parsePaxNumber(pax.get(k)!, k) : v)
    const e: TarEntry = {
      path, type, unknownType, linkpath,
      mode: h.mode & 0o7777,
      uid: num('uid', h.uid),
      gid: num('gid', h.gid),
      uname: pax.get('uname') ?? h.uname,
      gname: pax.get('gname') ?? h.gname,
      size: 0,
      mtime: pax.has('mtime') ? parsePaxTime(pax.get('mtime')!, 'mtime') : {s: h.mtime, ns: 0},
      atime: pax.has('atime') ? parsePaxTime(pax.get('atime')!, 'atime') : h.atime ? {s: h.atime, ns: 0} : null,
      ctime: pax.has('ctime') ? parsePaxTime(pax.get('ctime')!, 'ctime') : h.ctime ? {s: h.ctime, ns: 0} : null,
      devmajor: num('SCHILY.devmajor', h.devmajor),
      devminor: num('SCHILY.devminor', h.devminor),
      xattrs: [],
      aclAccess: pax.has('SCHILY.acl.access') ? pax.get('SCHILY.acl.access')!.toString('utf8') : null,
      aclDefault: pax.has('SCHILY.acl.default') ? pax.get('SCHILY.acl.default')!.toString('utf8') : null,
      sparse: null,
    }
    // Attributes: libarchive writes each twice (LIBARCHIVE.xattr.* base64, and SCHILY.xattr.*);
    // its own form wins when present. Records are applied in order: a later one replaces.
    const libarchive = recs.some((r) => r.key.startsWith('LIBARCHIVE.xattr.'))
    const xattrs = new Map<string, {name: Buffer, value: Buffer}>()
    for (const r of recs) {
      let x: {name: Buffer, value: Buffer} | null = null
      if (libarchive && r.key.startsWith('LIBARCHIVE.xattr.')) x = {name: decodeXattrKey(r.key.slice(17), true), value: Buffer.from(r.value.toString('latin1'), 'base64')}
      else if (!libarchive && r.key.startsWith('SCHILY.xattr.')) x = {name: decodeXattrKey(r.key.slice(13), false), value: r.value}
      else if (r.key === 'RHT.security.selinux') x = {name: Buffer.from('security.selinux'), value: r.value}
      if (x) xattrs.set(x.name.toString('latin1'), x)
    }
    e.xattrs = [...xattrs.values()]
    let stored = num('size', h.size)
    let regions: SparseRegion[] | null = oldSparse
    let realSize = oldSparse ? h.realSize ?? stored : stored
    const major = pax.get('GNU.sparse.major')?.toString('latin1')
    const minor = pax.get('GNU.sparse.minor')?.toString('latin1')
    let map10 = false
    if (major === '1' && minor === '0') {
      map10 = true
      if (pax.has('GNU.sparse.name')) e.path = pax.get('GNU.sparse.name')!
      realSize = num('GNU.sparse.realsize', stored)
    } else if (pax.has('GNU.sparse.map')) {
      // 0.1
      regions = parseSparseMapText(pax.get('GNU.sparse.map')!)
      if (pax.has('GNU.sparse.name')) e.path = pax.get('GNU.sparse.name')!
      realSize = num('GNU.sparse.size', num('GNU.sparse.realsize', stored))
    } else if (recs.some((r) => r.key === 'GNU.sparse.offset')) {
      // 0.0: offset and numbytes records in pairs, in order.
      regions = []
      let off: number | null = null
      for (const r of recs) {
        if (r.key === 'GNU.sparse.offset') off = parsePaxNumber(r.value, r.key)
        else if (r.key === 'GNU.sparse.numbytes') {
          if (off === null) throw new TarFormatError('GNU.sparse.numbytes without an offset')
          regions.push({offset: off, size: parsePaxNumber(r.value, r.key)})
          off = null
        }
      }
      if (pax.has('GNU.sparse.name')) e.path = pax.get('GNU.sparse.name')!
      realSize = num('GNU.sparse.size', stored)
    }
    this.resetPending()
    this.entries++
    const hasData = type === 'file'
    e.size = hasData ? realSize : 0
    if (!hasData) {
      // Links, directories and devices carry no data; a size there is skipped (GNU tar does).
      this.sink.entry(e)
      this.sink.end()
      this.startData(null, stored, null)
      return
    }
    if (map10) {
      // The map and the data are stored as one: the map in whole blocks, then the regions.
      if (stored === 0) throw new TarFormatError('sparse entry without its map')
      this.state = {k: 'map10', parts: [], got: 0, left: stored, entry: e, reader: new Sparse10MapReader(), done: null}
      return
    }
    if (regions) {
      checkSparseMap(regions, realSize, stored)
      e.sparse = regions
    }
    this.sink.entry(e)
    this.startData(e, stored, regions)
  }
}

function cut(b: Buffer): Buffer {
  const z = b.indexOf(0)
  return Buffer.from(z < 0 ? b : b.subarray(0, z))
}

function mergeGlobal(old: PaxRecord[], add: PaxRecord[]): PaxRecord[] {
  const keys = new Set(add.map((r) => r.key))
  return [...old.filter((r) => !keys.has(r.key)), ...add]
}
