// The clone-state file of an expanding clone (docs/FORMAT.md §8.5): a hidden regular file,
// named only by its fileset record's state_ino, that holds what expansion needs beyond the
// inodes themselves: the clone's source path and exclude patterns, and the map from each
// hard-linked source file to the clone's private copy of it. Pure encode/decode.
import {crc32} from './checksum.js'
import {FormatError} from './errors.js'
import {nameBytes, nameText} from './name.js'

export const CLONE_STATE_MAGIC = 0x54534350 // "PCST"
/** Version 1: no patterns, or patterns with the meaning of builds before the .gitignore rules. */
export const CLONE_STATE_V1 = 1
/** Version 2: patterns with the .gitignore rules (docs/FORMAT.md §8.5). Written only with patterns. */
export const CLONE_STATE_V2 = 2
export const CLONE_STATE_HDR = 32
export const REMAP_ENTRY = 20
/** Upper bounds a decoder enforces, so a damaged file cannot make it allocate without limit. */
export const CLONE_SPEC_MAX = 1 << 20
export const CLONE_PATTERN_MAX = 4096

/** What the patterns of a spec mean: .gitignore's rules, or those of builds before them (§8.5). */
export type ExcludeRules = 'gitignore' | 'legacy'

export interface CloneSpec {
  /** absolute path of the clone's top directory in the source fileset, '/' for a whole fileset */
  srcPath: string
  /** --exclude patterns, as given (see src/fs/match.ts) */
  exclude: string[]
  /** their meaning: 'legacy' only for a version-1 file that holds patterns */
  rules: ExcludeRules
}

/** The version a spec is written with: 2 when it holds patterns with the .gitignore rules. */
export function cloneStateVersion(spec: CloneSpec): number {
  return spec.exclude.length > 0 && spec.rules === 'gitignore' ? CLONE_STATE_V2 : CLONE_STATE_V1
}

export interface RemapEntry {
  srcIno: number
  srcGeneration: number
  copyIno: number
  copyGeneration: number
}

const align16 = (n: number): number => (n + 15) & ~15

/**
 * Why a clone-state file cannot hold `spec` (the clone's path and exclude patterns), or null:
 * at most CLONE_PATTERN_MAX patterns, each string at most 65,535 bytes, CLONE_SPEC_MAX in all.
 * An async or lazy clone whose patterns do not fit is refused before anything is made.
 */
export function cloneSpecProblem(spec: Pick<CloneSpec, 'srcPath' | 'exclude'>): string | null {
  if (spec.exclude.length > CLONE_PATTERN_MAX) return `${spec.exclude.length} exclude patterns, more than the ${CLONE_PATTERN_MAX} an async or lazy clone keeps`
  let total = 2
  for (const s of [spec.srcPath, ...spec.exclude]) {
    const n = nameBytes(s).length
    if (n > 0xffff) return `an exclude pattern or path of ${n} bytes, longer than the 65,535 an async or lazy clone keeps`
    total += 2 + n
  }
  if (total > CLONE_SPEC_MAX) return `exclude patterns of ${total} bytes in all, more than the ${CLONE_SPEC_MAX} an async or lazy clone keeps`
  return null
}

function encodeSpec(spec: CloneSpec): Buffer {
  const parts: Buffer[] = []
  const str = (s: string): void => {
    const b = nameBytes(s)
    if (b.length > 0xffff) throw new Error('clone spec string longer than 65535 bytes')
    const len = Buffer.alloc(2)
    len.writeUInt16LE(b.length)
    parts.push(len, b)
  }
  str(spec.srcPath)
  if (spec.exclude.length > CLONE_PATTERN_MAX) throw new Error(`more than ${CLONE_PATTERN_MAX} exclude patterns`)
  const n = Buffer.alloc(2)
  n.writeUInt16LE(spec.exclude.length)
  parts.push(n)
  for (const p of spec.exclude) str(p)
  const out = Buffer.concat(parts)
  if (out.length > CLONE_SPEC_MAX) throw new Error('clone spec too large')
  return out
}

/** Header and spec of a new clone-state file; remap entries are appended at `mapOffset`. */
export function encodeCloneState(spec: CloneSpec): {bytes: Buffer, mapOffset: number} {
  const body = encodeSpec(spec)
  const mapOffset = align16(CLONE_STATE_HDR + body.length)
  const buf = Buffer.alloc(mapOffset)
  buf.writeUInt32LE(CLONE_STATE_MAGIC, 0)
  buf.writeUInt16LE(cloneStateVersion(spec), 4)
  buf.writeUInt32LE(body.length, 8)
  buf.writeUInt32LE(crc32(body), 12)
  buf.writeUInt32LE(mapOffset, 16)
  buf.writeUInt32LE(crc32(buf, 0, 28), 28)
  body.copy(buf, CLONE_STATE_HDR)
  return {bytes: buf, mapOffset}
}

/** Reads the header; returns the spec and where the remap entries start. */
export function decodeCloneState(buf: Buffer, where = 'clone-state file'): {spec: CloneSpec, mapOffset: number} {
  if (buf.length < CLONE_STATE_HDR) throw new FormatError(where, 'value', 'shorter than its header')
  if (buf.readUInt32LE(0) !== CLONE_STATE_MAGIC) throw new FormatError(where, 'magic', 'bad magic')
  const version = buf.readUInt16LE(4)
  if (version !== CLONE_STATE_V1 && version !== CLONE_STATE_V2) throw new FormatError(where, 'version', `unsupported version ${version}`)
  if (buf.readUInt32LE(28) !== crc32(buf, 0, 28)) throw new FormatError(where, 'checksum', 'header checksum mismatch')
  const specLen = buf.readUInt32LE(8)
  const mapOffset = buf.readUInt32LE(16)
  if (specLen > CLONE_SPEC_MAX || mapOffset !== align16(CLONE_STATE_HDR + specLen) || buf.length < mapOffset) {
    throw new FormatError(where, 'value', 'spec length or map offset invalid')
  }
  const body = buf.subarray(CLONE_STATE_HDR, CLONE_STATE_HDR + specLen)
  if (crc32(body) !== buf.readUInt32LE(12)) throw new FormatError(where, 'checksum', 'spec checksum mismatch')
  let o = 0
  const str = (): string => {
    if (o + 2 > body.length) throw new FormatError(where, 'value', 'spec truncated')
    const n = body.readUInt16LE(o)
    if (o + 2 + n > body.length) throw new FormatError(where, 'value', 'spec truncated')
    const s = nameText(body.subarray(o + 2, o + 2 + n))
    o += 2 + n
    return s
  }
  const srcPath = str()
  if (!srcPath.startsWith('/')) throw new FormatError(where, 'value', 'source path is not absolute')
  if (o + 2 > body.length) throw new FormatError(where, 'value', 'spec truncated')
  const count = body.readUInt16LE(o)
  o += 2
  if (count > CLONE_PATTERN_MAX) throw new FormatError(where, 'value', 'too many patterns')
  const exclude: string[] = []
  for (let i = 0; i < count; i++) exclude.push(str())
  if (o !== body.length) throw new FormatError(where, 'value', 'spec has trailing bytes')
  // Version 1 patterns keep the meaning the build that wrote them gave them.
  return {spec: {srcPath, exclude, rules: version === CLONE_STATE_V1 && count > 0 ? 'legacy' : 'gitignore'}, mapOffset}
}

export function encodeRemapEntry(e: RemapEntry): Buffer {
  const b = Buffer.alloc(REMAP_ENTRY)
  b.writeUInt32LE(e.srcIno, 0)
  b.writeUInt32LE(e.srcGeneration, 4)
  b.writeUInt32LE(e.copyIno, 8)
  b.writeUInt32LE(e.copyGeneration, 12)
  b.writeUInt32LE(crc32(b, 0, 16), 16)
  return b
}

/** Decodes the remap entries that follow the header (`buf` is the whole file). */
export function decodeRemap(buf: Buffer, mapOffset: number, where = 'clone-state file'): RemapEntry[] {
  if ((buf.length - mapOffset) % REMAP_ENTRY !== 0) throw new FormatError(where, 'value', 'remap area is not a whole number of entries')
  const out: RemapEntry[] = []
  for (let o = mapOffset; o < buf.length; o += REMAP_ENTRY) {
    if (buf.readUInt32LE(o + 16) !== crc32(buf, o, o + 16)) throw new FormatError(where, 'checksum', `remap entry ${(o - mapOffset) / REMAP_ENTRY} checksum mismatch`)
    out.push({srcIno: buf.readUInt32LE(o), srcGeneration: buf.readUInt32LE(o + 4), copyIno: buf.readUInt32LE(o + 8), copyGeneration: buf.readUInt32LE(o + 12)})
  }
  return out
}
