// ClamAV signature databases for `prism scan --signatures` (README "prism scan"), loaded as
// ClamAV 1.4 loads them (libclamav/readdb.c), so that an existing database works as it is:
// text databases (.hdb, .hsb, .ndb, .db, .fp, .sfp, .ign, .ign2, and the kinds prism does not
// evaluate) and containers of them (.cvd, .cld, .cud: cvd.ts). Every signature of a kind
// prism evaluates exactly as ClamAV does is used: hash signatures (md5/sha1/sha256 of the
// whole file), and body signatures of target type 0 (any file) in the hex subset below. Every
// other one is skipped and counted, per kind and reason, for one summary line; a signature
// that would be evaluated otherwise than by ClamAV is skipped, never approximated. The
// false-positive lists (.fp, .sfp: files whose hash is listed are clean) and the ignore lists
// (.ign, .ign2: signature names not to load) are honoured. Only a file that is not a signature
// database at all (unknown extension, unreadable, a bad container, no line that is a
// signature) is refused, with one line.
import {pushAll} from '../arrays.js'
import fs from 'node:fs'
import path from 'node:path'
import {PrismError} from '../errors.js'
import {crypto} from '../lazy.js'
import {readContainer} from './cvd.js'
import {HashDb, type HashAlgo} from './hashdb.js'

export type {HashAlgo} from './hashdb.js'

/**
 * The functionality level of the ClamAV whose loading rules these are (ClamAV 1.4): a
 * signature that needs a higher level, or is meant only for engines below it, is skipped,
 * as ClamAV 1.4 skips it.
 */
export const ENGINE_FLEVEL = 216

export interface HashSig {
  algo: HashAlgo
  hash: string
  /** null: any size */
  size: number | null
  name: string
}

/** A run of bytes with `??` wildcards (mask 0) and no jumps. */
export interface Part {
  bytes: Buffer
  mask: Uint8Array
  /** the longest run of fixed bytes: what is searched for */
  anchor: Buffer
  anchorOff: number
}

export interface Gap {
  min: number
  /** Infinity for `*` and `{n-}` */
  max: number
}

export type Offset =
  | {kind: 'any'}
  | {kind: 'abs', start: number, shift: number}
  | {kind: 'eof', back: number, shift: number}

export interface BodySig {
  name: string
  offset: Offset
  parts: Part[]
  /** gaps[i] lies between parts[i] and parts[i+1] */
  gaps: Gap[]
}

/** What a load used and skipped, for the summary line and --json. */
export interface LoadReport {
  /** signatures in use, per kind ('.hdb', '.ndb', ...; a container's files by their own kind) */
  used: Record<string, number>
  /** signatures skipped, per "kind reason" ('.ldb (logical signatures)', '.ndb target type 1 (PE)') */
  skipped: Record<string, number>
  /** false-positive hashes in use (.fp, .sfp) */
  allowed: number
  /** names the ignore lists (.ign, .ign2) hold */
  ignoreNames: number
  /** the containers read */
  containers: Array<{file: string, version: number, signatures: number, flevel: number, builder: string, time: string, md5: string}>
}

export interface SignatureSet {
  hashes: HashDb
  /** false-positive list: a file whose hash is here is clean whatever matched */
  allow: HashDb
  bodies: BodySig[]
  /** sha256 over the kinds and contents of the files, in order: the incremental-results key */
  digest: Buffer
  files: string[]
  report: LoadReport
}

/** A signature not used, with why: `reason` is what the summary counts, `detail` the whole story. */
export class SkippedSignature extends Error {
  constructor(readonly reason: string, readonly detail: string) {
    super(detail)
  }
}

function skip(reason: string, detail: string = reason): never {
  throw new SkippedSignature(reason, detail)
}

function malformed(detail: string): never {
  throw new SkippedSignature('malformed', detail)
}

const ALGO_OF: Record<number, HashAlgo> = {32: 'md5', 40: 'sha1', 64: 'sha256'}

/** The functionality-level fields: skipped unless ENGINE_FLEVEL is within [min, max]. */
function checkFlevel(min: string | undefined, max: string | undefined): void {
  if (min === undefined) return
  if (!/^\d+$/.test(min)) malformed(`functionality level '${min}' is not a number`)
  if (Number(min) > ENGINE_FLEVEL) skip(`for a newer engine (functionality level > ${ENGINE_FLEVEL})`, `needs functionality level ${min}`)
  if (max === undefined || max === '') return
  if (!/^\d+$/.test(max)) malformed(`functionality level '${max}' is not a number`)
  if (Number(max) < ENGINE_FLEVEL) skip(`for older engines only (functionality level < ${ENGINE_FLEVEL})`, `only for functionality levels up to ${max}`)
}

/** Parses one .hdb/.hsb/.fp/.sfp line: `hash:size:name[:minflevel[:maxflevel]]`. */
export function parseHashLine(text: string): HashSig {
  const f = text.split(':')
  if (f.length < 3 || f.length > 5) malformed(`expected hash:size:name, got ${f.length} field(s)`)
  const [hash, sizeText, name] = f
  checkFlevel(f[3], f[4])
  let size: number | null
  if (sizeText === '*') {
    // As ClamAV: a wildcard size needs a functionality level of at least 73 on the line.
    if (f.length < 4 || !(Number(f[3]) >= 73)) malformed("size '*' needs a minimum functionality level of at least 73")
    size = null
  } else if (/^\d+$/.test(sizeText) && Number(sizeText) > 0 && Number(sizeText) < 0xffff_ffff) size = Number(sizeText)
  else malformed(`size '${sizeText}' is not a number from 1 to 4294967294, or '*'`)
  if (!/^[0-9a-fA-F]+$/.test(hash) || !ALGO_OF[hash.length]) malformed('hash must be 32 (md5), 40 (sha1) or 64 (sha256) hex digits')
  if (name === '') malformed('empty signature name')
  return {algo: ALGO_OF[hash.length], hash: hash.toLowerCase(), size, name}
}

/**
 * A number of an offset as ClamAV reads it (cli_caloff): atoi, which saturates past 2^63 - 1
 * (glibc's strtol) and keeps the low 32 bits (an int), stored as a uint32. So 4294967297 is 1,
 * and 4294967295 or anything of 20 digits is 0xffffffff, CLI_OFF_ANY as a start: any offset.
 */
function clamNumber(digits: string): number {
  const v = BigInt(digits)
  const LONG_MAX = (1n << 63n) - 1n
  return Number((v > LONG_MAX ? LONG_MAX : v) & 0xffff_ffffn)
}

/** ClamAV's CLI_OFF_ANY: an absolute start of 0xffffffff is no start at all */
const OFF_ANY = 0xffff_ffff

function parseOffset(text: string): Offset {
  if (text === '*') return {kind: 'any'}
  let m = /^(\d+)(?:,(\d+))?$/.exec(text)
  if (m) {
    const start = clamNumber(m[1])
    return start === OFF_ANY ? {kind: 'any'} : {kind: 'abs', start, shift: m[2] === undefined ? 0 : clamNumber(m[2])}
  }
  m = /^EOF-(\d+)(?:,(\d+))?$/.exec(text)
  if (m) return {kind: 'eof', back: clamNumber(m[1]), shift: m[2] === undefined ? 0 : clamNumber(m[2])}
  if (/^(EP|S\d+|SL|SE|VI)/.test(text)) skip('executable-file offsets (EP, Sn, SL, SE, VI)', `offset '${text}' is relative to an executable's layout`)
  if (text.includes('$')) skip('offset macros ($n$)', `offset '${text}' is a macro`)
  return malformed(`offset '${text}' is not *, n, n,maxshift, EOF-n or EOF-n,maxshift`)
}

/**
 * Parses a hex signature into parts and gaps, as ClamAV does: `{n}` with 0 < n < 128 is n
 * `??` (ClamAV expands it so), any other jump (`*`, `{n-m}`, `{n-}`, `{-n}`, `{0}`, `{n}` of
 * 128 or more) splits the signature into parts, and a jump's maximum of 0 means none.
 */
export function parseHexSig(hex: string): {parts: Part[], gaps: Gap[]} {
  const parts: Part[] = []
  const gaps: Gap[] = []
  let bytes: number[] = []
  let mask: number[] = []
  const endPart = (what: string) => {
    if (bytes.length === 0) malformed(`${what} with no bytes before it`)
    parts.push(makePart(bytes, mask))
    bytes = []
    mask = []
  }
  let i = 0
  while (i < hex.length) {
    const c = hex[i]
    if (c === '*') {
      endPart("'*'")
      gaps.push({min: 0, max: Infinity})
      i++
      continue
    }
    if (c === '{') {
      const close = hex.indexOf('}', i)
      if (close < 0) malformed("unclosed '{'")
      const body = hex.slice(i + 1, close)
      const m = /^(\d*)(-?)(\d*)$/.exec(body)
      if (!m || (m[1] === '' && m[3] === '') || (m[2] === '' && m[3] !== '')) malformed(`jump '{${body}}' is not {n}, {n-m}, {n-} or {-n}`)
      const min = m[1] === '' ? 0 : Number(m[1])
      let max = m[2] === '' ? min : m[3] === '' ? Infinity : Number(m[3])
      i = close + 1
      if (m[2] === '' && min > 0 && min < 128) {
        for (let k = 0; k < min; k++) { bytes.push(0); mask.push(0) }
        continue
      }
      // As ClamAV: a jump whose maximum is 0 ({0}, {-0}, {n-0}) has no maximum.
      if (max === 0) max = Infinity
      if (max < min) malformed(`jump '{${body}}' has its maximum below its minimum`)
      endPart(`jump '{${body}}'`)
      gaps.push({min, max})
      continue
    }
    const pair = hex.slice(i, i + 2)
    if (pair === '??') {
      bytes.push(0)
      mask.push(0)
    } else if (/^[0-9a-fA-F]{2}$/.test(pair)) {
      bytes.push(parseInt(pair, 16))
      mask.push(1)
    } else if (/^([0-9a-fA-F]\?|\?[0-9a-fA-F])$/.test(pair)) {
      skip('nibble wildcards (a?, ?a)', `nibble wildcard '${pair}' at character ${i + 1}`)
    } else if ('(|)'.includes(c)) {
      skip('alternatives (aa|bb)', `alternatives at character ${i + 1}`)
    } else if (c === '!') {
      skip('negations (!)', `a negation at character ${i + 1}`)
    } else if (c === '[') {
      skip("'[n-m]' jumps", `a '[n-m]' jump at character ${i + 1}`)
    } else {
      malformed(`unexpected '${pair}' at character ${i + 1} of the hex signature`)
    }
    i += 2
  }
  if (bytes.length === 0) malformed(parts.length === 0 ? 'empty hex signature' : 'signature ends with a jump')
  parts.push(makePart(bytes, mask))
  return {parts, gaps}
}

function makePart(bytes: number[], mask: number[]): Part {
  let best = -1
  let bestLen = 0
  for (let s = 0; s < mask.length;) {
    if (!mask[s]) { s++; continue }
    let e = s
    while (e < mask.length && mask[e]) e++
    if (e - s > bestLen) { best = s; bestLen = e - s }
    s = e
  }
  if (best < 0) skip('a part without fixed bytes', 'a part of the signature between jumps has no fixed byte')
  const b = Buffer.from(bytes)
  return {bytes: b, mask: Uint8Array.from(mask), anchor: b.subarray(best, best + bestLen), anchorOff: best}
}

/**
 * What ClamAV refuses (the whole database with it, as malformed): a signature of fixed bytes
 * only that is shorter than 3 bytes, or a part (between jumps) without 2 fixed bytes in a row.
 */
function checkClamavLength(name: string, parts: Part[]): void {
  const plain = parts.length === 1 && parts[0].mask.every((m) => m === 1)
  if (plain ? parts[0].bytes.length < 3 : parts.some((p) => p.anchor.length < 2)) {
    skip('too short for ClamAV', `signature ${name} is too short for ClamAV (3 bytes, or 2 fixed bytes in a row in every part)`)
  }
}

const TARGETS: Record<string, string> = {
  1: 'PE', 2: 'OLE2', 3: 'HTML', 4: 'mail', 5: 'graphics', 6: 'ELF', 7: 'ASCII text', 8: 'unused', 9: 'Mach-O', 10: 'PDF', 11: 'Flash', 12: 'Java class',
}

/**
 * Parses one .ndb line: `name:target:offset:hexsig[:minflevel[:maxflevel]]`. `lengthLimits`
 * false keeps a signature ClamAV would find too short (for tests of the matcher itself).
 */
export function parseBodyLine(text: string, opts: {lengthLimits?: boolean} = {}): BodySig {
  const f = text.split(':')
  if (f.length < 4 || f.length > 6) malformed(`expected name:target:offset:hexsig, got ${f.length} field(s)`)
  const [name, target, offset, hex] = f
  if (name === '') malformed('empty signature name')
  checkFlevel(f[4], f[5])
  // As ClamAV: '*' is target 0.
  if (target !== '*' && !/^\d+$/.test(target)) malformed(`target type '${target}' is not a number`)
  if (target !== '*' && Number(target) !== 0) {
    skip(`target type ${target}${TARGETS[target] ? ` (${TARGETS[target]})` : ''}`, `target type ${target} needs ClamAV's file-type detection`)
  }
  const o = parseOffset(offset)
  const {parts, gaps} = parseHexSig(hex)
  if (opts.lengthLimits !== false) checkClamavLength(name, parts)
  return {name, offset: o, parts, gaps}
}

/** Parses one .db line (ClamAV's oldest format): `name=hexsig`, any file, any offset. */
export function parseDbLine(text: string): BodySig | null {
  const eq = text.indexOf('=')
  if (eq < 0) malformed("expected name=hexsig")
  const name = text.slice(0, eq)
  const hex = text.slice(eq + 1)
  if (hex.startsWith('=')) return null // as ClamAV: such a line is passed over
  if (name === '') malformed('empty signature name')
  const {parts, gaps} = parseHexSig(hex)
  checkClamavLength(name, parts)
  return {name, offset: {kind: 'any'}, parts, gaps}
}

/** The ignore lists: a name, or `name:md5` (of the whole signature line), or `db:line:name`. */
interface IgnoreList {
  /** name -> null (always) or the md5s of the lines to ignore */
  names: Map<string, Set<string> | null>
}

function addIgnoreLine(ign: IgnoreList, text: string): void {
  const f = text.split(':')
  if (f.length > 3) malformed(`expected name, name:md5 or db:line:name, got ${f.length} fields`)
  const name = f.length === 3 ? f[2] : f[0]
  if (name === '') malformed('no signature name')
  if (f.length === 2) {
    if (!/^[0-9a-fA-F]{32}$/.test(f[1])) malformed(`'${f[1]}' is not an MD5 (32 hex digits)`)
    const cur = ign.names.get(name)
    if (cur === null) return
    if (cur) cur.add(f[1].toLowerCase())
    else ign.names.set(name, new Set([f[1].toLowerCase()]))
    return
  }
  ign.names.set(name, null)
}

function ignored(ign: IgnoreList, name: string, line: string): boolean {
  if (ign.names.size === 0 || !ign.names.has(name)) return false
  const md5s = ign.names.get(name)
  return md5s === null || md5s!.has(crypto().createHash('md5').update(line, 'latin1').digest('hex'))
}

type Handling =
  | {use: 'hash' | 'allow' | 'body' | 'db' | 'ignore'}
  | {use: 'meta'}
  | {use: 'skip', what: string}
  | {use: 'container'}

/** Every file name ClamAV loads, by extension (libclamav's CLI_DBEXT), and what prism does with it. */
const KINDS: Record<string, Handling> = {
  '.hdb': {use: 'hash'}, '.hsb': {use: 'hash'},
  '.fp': {use: 'allow'}, '.sfp': {use: 'allow'},
  '.ndb': {use: 'body'}, '.db': {use: 'db'},
  '.ign': {use: 'ignore'}, '.ign2': {use: 'ignore'},
  '.info': {use: 'meta'}, '.cfg': {use: 'meta'},
  '.cvd': {use: 'container'}, '.cld': {use: 'container'}, '.cud': {use: 'container'},
  '.ldb': {use: 'skip', what: 'logical signatures'},
  '.hdu': {use: 'skip', what: 'PUA hashes, used by clamscan only with --detect-pua'},
  '.hsu': {use: 'skip', what: 'PUA hashes, used by clamscan only with --detect-pua'},
  '.ndu': {use: 'skip', what: 'PUA body signatures, used by clamscan only with --detect-pua'},
  '.ldu': {use: 'skip', what: 'PUA logical signatures, used by clamscan only with --detect-pua'},
  '.mdu': {use: 'skip', what: 'PUA PE section hashes'},
  '.msu': {use: 'skip', what: 'PUA PE section hashes'},
  '.mdb': {use: 'skip', what: 'PE section hashes'},
  '.msb': {use: 'skip', what: 'PE section hashes'},
  '.imp': {use: 'skip', what: 'PE import-table hashes'},
  '.cdb': {use: 'skip', what: 'container metadata'},
  '.zmd': {use: 'skip', what: 'zip metadata'},
  '.rmd': {use: 'skip', what: 'rar metadata'},
  '.pdb': {use: 'skip', what: 'phishing: protected domains'},
  '.gdb': {use: 'skip', what: 'phishing: protected domains'},
  '.wdb': {use: 'skip', what: 'phishing: allowed URLs'},
  '.idb': {use: 'skip', what: 'icon signatures'},
  '.crb': {use: 'skip', what: 'trusted and revoked certificates'},
  '.cat': {use: 'skip', what: 'trusted certificates'},
  '.ftm': {use: 'skip', what: 'file-type magic'},
  '.cbc': {use: 'skip', what: 'bytecode signatures'},
  '.yar': {use: 'skip', what: 'YARA rules'},
  '.yara': {use: 'skip', what: 'YARA rules'},
  '.pwdb': {use: 'skip', what: 'archive passwords'},
  '.sdb': {use: 'skip', what: 'self-protection signatures'},
  '.ioc': {use: 'skip', what: 'indicators of compromise'},
}

const extOf = (name: string): string => path.extname(name).toLowerCase()

/** One database file to load: its name (for messages and its kind) and its bytes. */
interface Source {
  label: string
  ext: string
  data: Buffer
  /** a file inside a container (whose emptiness or damage does not refuse the container) */
  inner: boolean
}

/** A name as the database has it: its bytes are UTF-8 (the lines are read byte for byte). */
const utf8 = (latin1: string): string => (/[\x80-\xff]/.test(latin1) ? Buffer.from(latin1, 'latin1').toString('utf8') : latin1)

/** Counts and holds what a load makes. */
class Loader {
  readonly set: SignatureSet
  private readonly ign: IgnoreList = {names: new Map()}

  constructor(files: string[]) {
    this.set = {
      hashes: new HashDb(), allow: new HashDb(), bodies: [], digest: Buffer.alloc(32), files,
      report: {used: {}, skipped: {}, allowed: 0, ignoreNames: 0, containers: []},
    }
  }

  private count(map: Record<string, number>, key: string): void {
    map[key] = (map[key] ?? 0) + 1
  }

  /** The lines of a text database that are signatures (not blank, not a '#' comment), one by one. */
  private static *lines(src: Source): Generator<{text: string, no: number}> {
    const all = src.data.toString('latin1')
    let no = 0
    for (let at = 0; at < all.length;) {
      let end = all.indexOf('\n', at)
      if (end < 0) end = all.length
      no++
      const text = all.slice(at, end > at && all.charCodeAt(end - 1) === 13 ? end - 1 : end)
      at = end + 1
      if (text === '' || text.charCodeAt(0) === 35) continue
      yield {text, no}
    }
  }

  /** Ignore lists first (ClamAV reads them before the signatures). */
  loadIgnore(src: Source): void {
    for (const {text, no} of Loader.lines(src)) {
      try {
        addIgnoreLine(this.ign, text)
      } catch (e) {
        if (!(e instanceof SkippedSignature)) throw e
        throw new PrismError('EUSAGE', `${src.label}:${no}: not an ignore list (${e.detail})`)
      }
    }
    this.set.report.ignoreNames = this.ign.names.size
  }

  /** A text database of a kind prism uses. */
  loadText(src: Source, use: 'hash' | 'allow' | 'body' | 'db'): void {
    let lines = 0
    let malformedOnly = true
    let first: string | null = null
    for (const {text, no} of Loader.lines(src)) {
      lines++
      try {
        if (use === 'hash' || use === 'allow') {
          const h = parseHashLine(text)
          if (ignored(this.ign, h.name, text)) { this.count(this.set.report.skipped, `${src.ext} ignored (.ign, .ign2)`); malformedOnly = false; continue }
          if (use === 'hash') {
            this.set.hashes.add(h.algo, h.hash, h.size, utf8(h.name))
            this.count(this.set.report.used, src.ext)
          } else {
            this.set.allow.add(h.algo, h.hash, h.size, utf8(h.name))
            this.set.report.allowed++
          }
        } else {
          const name = use === 'db' ? text.slice(0, Math.max(0, text.indexOf('='))) : text.slice(0, Math.max(0, text.indexOf(':')))
          if (name && ignored(this.ign, name, text)) { this.count(this.set.report.skipped, `${src.ext} ignored (.ign, .ign2)`); malformedOnly = false; continue }
          const b = use === 'db' ? parseDbLine(text) : parseBodyLine(text)
          if (!b) continue
          b.name = utf8(b.name)
          this.set.bodies.push(b)
          this.count(this.set.report.used, src.ext)
        }
        malformedOnly = false
      } catch (e) {
        if (!(e instanceof SkippedSignature)) throw e
        if (e.reason !== 'malformed') malformedOnly = false
        else first ??= `line ${no}: ${e.detail}`
        this.count(this.set.report.skipped, `${src.ext} ${e.reason}`)
      }
    }
    if (src.inner) return
    if (lines === 0 && (use === 'hash' || use === 'body' || use === 'db')) {
      throw new PrismError('EUSAGE', `${src.label}: holds no signatures`)
    }
    if (malformedOnly && lines > 0) throw new PrismError('EUSAGE', `${src.label}: not a ClamAV ${src.ext} database (no line of it is a signature; ${first})`)
  }

  /** A kind prism does not evaluate: each signature is counted as skipped. */
  loadSkipped(src: Source, what: string): void {
    let n: number
    if (src.ext === '.cbc') n = 1
    else if (src.ext === '.yar' || src.ext === '.yara') n = (src.data.toString('latin1').match(/^\s*(?:(?:private|global)\s+)*rule\s/gm) ?? []).length
    else n = [...Loader.lines(src)].length
    if (n > 0) this.set.report.skipped[`${src.ext} (${what})`] = (this.set.report.skipped[`${src.ext} (${what})`] ?? 0) + n
  }
}

/** The files a --signatures argument stands for, read (a container unpacked), and its bytes. */
function sourcesOf(file: string, loader: Loader): {raw: Buffer, sources: Source[]} {
  const ext = extOf(file)
  const kind = KINDS[ext]
  if (!kind || kind.use === 'meta') {
    // (a path that is not there is said so, not taken for a file of an unknown kind)
    if (!fs.existsSync(file)) throw new PrismError('EUSAGE', `${file}: cannot read (ENOENT)`)
    throw new PrismError('EUSAGE', `${file}: not a ClamAV signature database (unknown file type '${ext || '(none)'}'; ` +
      'prism reads .cvd, .cld, .cud, .hdb, .hsb, .ndb, .db, .fp, .sfp, .ign, .ign2 and skips the other ClamAV kinds)')
  }
  let data: Buffer
  try {
    data = fs.readFileSync(file)
  } catch (e) {
    throw new PrismError('EUSAGE', `${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`)
  }
  if (kind.use !== 'container') return {raw: data, sources: [{label: file, ext, data, inner: false}]}
  const c = readContainer(file, data, ext as '.cvd' | '.cld' | '.cud', (name) => {
    const k = KINDS[extOf(name)]
    return !!k && k.use !== 'container' && extOf(name) !== '.info'
  })
  loader.set.report.containers.push({file, ...c.header})
  // Files ClamAV would not load (COPYING, .info, unknown names) are passed over, as it does.
  const sources = c.files.filter((f) => { const k = KINDS[extOf(f.name)]; return !!k && k.use !== 'meta' && k.use !== 'container' })
    .map((f) => ({label: `${file}:${f.name}`, ext: extOf(f.name), data: f.data, inner: true}))
  return {raw: data, sources}
}

/**
 * Reads signature databases and containers. Refuses (EUSAGE, one line) a file that is not a
 * signature database, and a set in which no signature is usable.
 */
export function loadSignatures(files: string[]): SignatureSet {
  const loader = new Loader(files)
  // Version 2: the signatures a database yields changed with the rules above (skipped lines,
  // ignore and false-positive lists): results remembered under version 1 are not reused.
  const h = crypto().createHash('sha256').update('prism-signatures-2\0')
  const sources: Source[] = []
  for (const file of files) {
    const r = sourcesOf(file, loader)
    pushAll(sources, r.sources)
    h.update(extOf(file)).update('\0').update(r.raw).update('\0')
  }
  for (const s of sources) if (KINDS[s.ext].use === 'ignore') loader.loadIgnore(s)
  for (const s of sources) {
    const k = KINDS[s.ext]
    if (k.use === 'hash' || k.use === 'allow' || k.use === 'body' || k.use === 'db') loader.loadText(s, k.use)
    else if (k.use === 'skip') loader.loadSkipped(s, k.what)
  }
  const set = loader.set
  set.digest = h.digest()
  if (set.hashes.count + set.bodies.length === 0) {
    throw new PrismError('EUSAGE', `no usable signatures in ${files.join(', ')}${describeSkipped(set.report) ? `: ${describeSkipped(set.report)}` : ''}`)
  }
  return set
}

/** "skipped N: n1 kind reason, n2 ..." or '' when nothing was skipped. */
function describeSkipped(r: LoadReport): string {
  const entries = Object.entries(r.skipped).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
  const total = entries.reduce((n, [, k]) => n + k, 0)
  return total === 0 ? '' : `skipped ${total}: ${entries.map(([k, n]) => `${n} ${k}`).join(', ')}`
}

/** The summary line: what is used and what is skipped, per kind and reason. */
export function describeLoad(r: LoadReport): string {
  const used = Object.entries(r.used).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
  const total = used.reduce((n, [, k]) => n + k, 0)
  let s = `signatures: ${total} in use (${used.map(([k, n]) => `${n} ${k}`).join(', ')})`
  if (r.allowed) s += `, ${r.allowed} false-positive hash(es)`
  if (r.ignoreNames) s += `, ${r.ignoreNames} name(s) to ignore`
  const skipped = describeSkipped(r)
  return skipped ? `${s}; ${skipped}` : s
}
