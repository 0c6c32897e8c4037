// The locality setting (copy-on-abundant-write, docs/FORMAT.md §6.6): one byte that says
// whether the write path keeps a file's regions together, and how large a region is. The
// same code is stored in an inode (0x65), in a fileset record's flags (0x0F, low five bits)
// and in the superblock (0x0B8). Pure encode/decode and parsing; it never touches an image.

/** Nothing said here: the fileset's setting, then the image's, apply. */
export const LOCALITY_INHERIT = 0
/** The policy is off: pure block copy-on-write (every written block goes where allocation puts it). */
export const LOCALITY_OFF = 1
/** The policy is on, with the region size of the next level up. */
export const LOCALITY_ON = 2
/** Codes 16..20: on, with regions of 2^code bytes (64 KiB .. 1 MiB). */
export const REGION_LOG2_MIN = 16
export const REGION_LOG2_MAX = 20
/** Bits of a fileset record's flags byte that hold its locality code. */
export const FILESET_LOCALITY_MASK = 0x1f

export type LocalityCode = number

/** A code as read from the image: an unknown value reads as LOCALITY_INHERIT (a compat field, §11.2 item 10). */
export function localityCode(raw: number): LocalityCode {
  if (raw === LOCALITY_OFF || raw === LOCALITY_ON) return raw
  if (raw >= REGION_LOG2_MIN && raw <= REGION_LOG2_MAX) return raw
  return LOCALITY_INHERIT
}

/** The region size a code names in bytes, or 0 when it names none. */
export function regionBytesOf(code: LocalityCode): number {
  return code >= REGION_LOG2_MIN && code <= REGION_LOG2_MAX ? 2 ** code : 0
}

/** The code for a region of `bytes` (a power of two, 64 KiB to 1 MiB), or null. */
export function regionCode(bytes: number): LocalityCode | null {
  for (let k = REGION_LOG2_MIN; k <= REGION_LOG2_MAX; k++) if (2 ** k === bytes) return k
  return null
}

/** Parses `off`, `on`, `inherit` or a region size (64K, 128K, 256K, 512K, 1M). */
export function parseLocality(text: string, parseSize: (s: string) => number): LocalityCode {
  const t = text.trim().toLowerCase()
  if (t === 'off') return LOCALITY_OFF
  if (t === 'on') return LOCALITY_ON
  if (t === 'inherit' || t === 'default') return LOCALITY_INHERIT
  let bytes: number
  try {
    bytes = parseSize(t)
  } catch {
    throw new Error(`invalid coaw setting '${text}' (use off, on, inherit, or a region size: 64K, 128K, 256K, 512K, 1M)`)
  }
  const code = regionCode(bytes)
  if (code === null) throw new Error(`invalid coaw region size '${text}' (a power of two from 64K to 1M)`)
  return code
}

/** How a code is shown: off, on, inherit, or the region size (64K ... 1M). */
export function showLocality(code: LocalityCode): string {
  if (code === LOCALITY_OFF) return 'off'
  if (code === LOCALITY_ON) return 'on'
  const b = regionBytesOf(code)
  if (b) return b >= 1 << 20 ? `${b >> 20}M` : `${b >> 10}K`
  return 'inherit'
}
