// ClamAV signature databases, the subset `prism scan` supports (README "prism scan"):
// hash signatures (.hdb, .hsb: `hash:size:name`, md5/sha1/sha256 chosen by the hash's
// length, size `*` = any size) and body signatures (.ndb: `name:0:offset:hexsig` with
// `??`, `*`, `{n}`, `{n-m}`, `{n-}`, `{-n}` in the hex signature, and offsets `*`, `n`,
// `n,maxshift`, `EOF-n`, `EOF-n,maxshift`). Anything else is refused with one line naming
// the file, the line and the reason.
import fs from 'node:fs'
import path from 'node:path'
import {PrismError} from '../errors.js'
import {crypto} from '../lazy.js'

export type HashAlgo = 'md5' | 'sha1' | 'sha256'

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

export interface SignatureSet {
  hashes: HashSig[]
  bodies: BodySig[]
  /** sha256 over the kinds and contents of the files, in order: the incremental-results key */
  digest: Buffer
  files: string[]
}

const ALGO_OF: Record<number, HashAlgo> = {32: 'md5', 40: 'sha1', 64: 'sha256'}

function refuse(file: string, line: number, why: string): never {
  throw new PrismError('EUSAGE', `${file}:${line}: ${why}`)
}

/** Parses one .hdb/.hsb line. */
export function parseHashLine(text: string, file = 'signatures', line = 1): HashSig {
  const f = text.split(':')
  if (f.length < 3 || f.length > 5) refuse(file, line, `expected hash:size:name, got ${f.length} field(s)`)
  const [hash, sizeText, name] = f
  if (!/^[0-9a-fA-F]+$/.test(hash) || !ALGO_OF[hash.length]) {
    refuse(file, line, `hash must be 32 (md5), 40 (sha1) or 64 (sha256) hex digits`)
  }
  let size: number | null
  if (sizeText === '*') size = null
  else if (/^\d+$/.test(sizeText) && Number.isSafeInteger(Number(sizeText))) size = Number(sizeText)
  else refuse(file, line, `size '${sizeText}' is not a number or '*'`)
  if (name === '') refuse(file, line, 'empty signature name')
  for (const fl of f.slice(3)) if (!/^\d*$/.test(fl)) refuse(file, line, `functionality level '${fl}' is not a number`)
  return {algo: ALGO_OF[hash.length], hash: hash.toLowerCase(), size, name}
}

function parseOffset(text: string, file: string, line: number): Offset {
  if (text === '*') return {kind: 'any'}
  let m = /^(\d+)(?:,(\d+))?$/.exec(text)
  if (m) return {kind: 'abs', start: Number(m[1]), shift: m[2] === undefined ? 0 : Number(m[2])}
  m = /^EOF-(\d+)(?:,(\d+))?$/.exec(text)
  if (m) return {kind: 'eof', back: Number(m[1]), shift: m[2] === undefined ? 0 : Number(m[2])}
  if (/^(EP|S\d+|SL|SE)/.test(text)) refuse(file, line, `offset '${text}' (executable anchors) is not supported`)
  refuse(file, line, `offset '${text}' is not supported (use *, n, n,maxshift, EOF-n)`)
}

/** Parses a hex signature into parts and gaps. */
export function parseHexSig(hex: string, file = 'signatures', line = 1): {parts: Part[], gaps: Gap[]} {
  const parts: Part[] = []
  const gaps: Gap[] = []
  let bytes: number[] = []
  let mask: number[] = []
  const endPart = (what: string) => {
    if (bytes.length === 0) refuse(file, line, `${what} with no bytes before it`)
    parts.push(makePart(bytes, mask, file, line))
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
      if (close < 0) refuse(file, line, "unclosed '{'")
      const body = hex.slice(i + 1, close)
      const m = /^(\d*)(-?)(\d*)$/.exec(body)
      if (!m || (m[1] === '' && m[3] === '') || (m[2] === '' && m[3] !== '')) refuse(file, line, `jump '{${body}}' is not supported (use {n}, {n-m}, {n-}, {-n})`)
      const min = m[1] === '' ? 0 : Number(m[1])
      const max = m[2] === '' ? min : m[3] === '' ? Infinity : Number(m[3])
      if (max < min) refuse(file, line, `jump '{${body}}' has its maximum below its minimum`)
      endPart(`jump '{${body}}'`)
      gaps.push({min, max})
      i = close + 1
      continue
    }
    const pair = hex.slice(i, i + 2)
    if (pair === '??') {
      bytes.push(0)
      mask.push(0)
    } else if (/^[0-9a-fA-F]{2}$/.test(pair)) {
      bytes.push(parseInt(pair, 16))
      mask.push(1)
    } else if (/[?]/.test(pair)) {
      refuse(file, line, `nibble wildcard '${pair}' at character ${i + 1} is not supported`)
    } else if ('(|)!'.includes(c)) {
      refuse(file, line, `alternatives and negations '${c}' at character ${i + 1} are not supported`)
    } else if (c === '[') {
      refuse(file, line, `'[n-m]' jumps at character ${i + 1} are not supported`)
    } else {
      refuse(file, line, `unexpected '${pair}' at character ${i + 1} of the hex signature`)
    }
    i += 2
  }
  if (bytes.length === 0) refuse(file, line, parts.length === 0 ? 'empty hex signature' : 'signature ends with a jump')
  parts.push(makePart(bytes, mask, file, line))
  return {parts, gaps}
}

function makePart(bytes: number[], mask: number[], file: string, line: number): Part {
  let best = -1
  let bestLen = 0
  for (let s = 0; s < mask.length;) {
    if (!mask[s]) { s++; continue }
    let e = s
    while (e < mask.length && mask[e]) e++
    if (e - s > bestLen) { best = s; bestLen = e - s }
    s = e
  }
  if (best < 0) refuse(file, line, 'a part of the signature between jumps has no fixed byte')
  const b = Buffer.from(bytes)
  return {bytes: b, mask: Uint8Array.from(mask), anchor: b.subarray(best, best + bestLen), anchorOff: best}
}

/** Parses one .ndb line. */
export function parseBodyLine(text: string, file = 'signatures', line = 1): BodySig {
  const f = text.split(':')
  if (f.length < 4 || f.length > 6) refuse(file, line, `expected name:target:offset:hexsig, got ${f.length} field(s)`)
  const [name, target, offset, hex] = f
  if (name === '') refuse(file, line, 'empty signature name')
  if (target !== '0') refuse(file, line, `target type '${target}' is not supported (only 0, any file)`)
  for (const fl of f.slice(4)) if (!/^\d*$/.test(fl)) refuse(file, line, `functionality level '${fl}' is not a number`)
  const o = parseOffset(offset, file, line)
  const {parts, gaps} = parseHexSig(hex, file, line)
  return {name, offset: o, parts, gaps}
}

/** Reads signature files; the kind comes from the extension (.hdb, .hsb, .ndb). */
export function loadSignatures(files: string[]): SignatureSet {
  const set: SignatureSet = {hashes: [], bodies: [], digest: Buffer.alloc(32), files}
  const h = crypto().createHash('sha256').update('prism-signatures-1\0')
  for (const file of files) {
    const ext = path.extname(file).toLowerCase()
    if (!['.hdb', '.hsb', '.ndb'].includes(ext)) {
      throw new PrismError('EUSAGE', `${file}: unsupported signature file type '${ext || '(none)'}' (supported: .hdb, .hsb, .ndb)`)
    }
    let text: string
    try {
      text = fs.readFileSync(file, 'utf8')
    } catch (e) {
      throw new PrismError('EUSAGE', `${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`)
    }
    const lines = text.split(/\r?\n/)
    let count = 0
    lines.forEach((raw, i) => {
      const t = raw.trim()
      if (t === '') return
      count++
      if (ext === '.ndb') set.bodies.push(parseBodyLine(t, file, i + 1))
      else set.hashes.push(parseHashLine(t, file, i + 1))
    })
    if (count === 0) throw new PrismError('EUSAGE', `${file}: holds no signatures`)
    h.update(ext).update('\0').update(text).update('\0')
  }
  set.digest = h.digest()
  return set
}
