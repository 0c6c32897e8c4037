// Names as text. A name is bytes (as on Linux); the library's paths are strings. A name that
// is UTF-8 decodes as usual; each byte of one that is not (a Latin-1 name from an old tarball,
// say) becomes the lone surrogate U+DC00 + byte, as Python's 'surrogateescape' does. Valid
// UTF-8 never decodes to a lone surrogate, so nameBytes(nameText(b)) equals b for every b,
// and a name goes from host to image and back byte for byte. Pure; no imports (the CLI's
// error line uses nameShown). docs/FORMAT.md §7 ("Names").

/** The length of the well-formed UTF-8 sequence at b[i], or 0 (RFC 3629: no overlongs, no surrogates, at most U+10FFFF). */
function utf8Seq(b: Buffer, i: number): number {
  const c = b[i]
  if (c < 0x80) return 1
  const cont = (k: number, lo = 0x80, hi = 0xbf) => i + k < b.length && b[i + k] >= lo && b[i + k] <= hi
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0
  if (c >= 0xe0 && c <= 0xef) {
    const lo = c === 0xe0 ? 0xa0 : 0x80, hi = c === 0xed ? 0x9f : 0xbf
    return cont(1, lo, hi) && cont(2) ? 3 : 0
  }
  if (c >= 0xf0 && c <= 0xf4) {
    const lo = c === 0xf0 ? 0x90 : 0x80, hi = c === 0xf4 ? 0x8f : 0xbf
    return cont(1, lo, hi) && cont(2) && cont(3) ? 4 : 0
  }
  return 0
}

/** The name (or path) `b` as text: UTF-8, with each byte of an ill-formed sequence escaped. */
export function nameText(b: Buffer): string {
  const s = b.toString('utf8')
  // The decoder puts U+FFFD for what is ill-formed; a name holding none is plain UTF-8.
  if (!s.includes('\ufffd')) return s
  let out = ''
  let i = 0
  while (i < b.length) {
    const n = utf8Seq(b, i)
    if (n === 0) out += String.fromCharCode(0xdc00 + b[i++])
    else {
      out += b.toString('utf8', i, i + n)
      i += n
    }
  }
  return out
}

/** nameText of buf[start, end), without making a view of it for a name that is UTF-8 (most are). */
export function nameTextAt(buf: Buffer, start: number, end: number): string {
  const s = buf.toString('utf8', start, end)
  return s.includes('\ufffd') ? nameText(buf.subarray(start, end)) : s
}

/** A lone low surrogate U+DC80..U+DCFF: an escaped byte (a surrogate pair's second half is not). */
const ESCAPED = /(?<![\ud800-\udbff])[\udc80-\udcff]/
const ESCAPED_ALL = new RegExp(ESCAPED.source, 'g')

/** The bytes of name (or path) text: the inverse of nameText. */
export function nameBytes(s: string): Buffer<ArrayBuffer> {
  if (!ESCAPED.test(s)) return Buffer.from(s, 'utf8')
  const parts: Buffer[] = []
  let from = 0
  for (const m of s.matchAll(ESCAPED_ALL)) {
    parts.push(Buffer.from(s.slice(from, m.index), 'utf8'), Buffer.of(s.charCodeAt(m.index) - 0xdc00))
    from = m.index + 1
  }
  parts.push(Buffer.from(s.slice(from), 'utf8'))
  return Buffer.concat(parts)
}

/** What nameShown rewrites: an escaped byte, or a control character (C0, DEL, C1). */
const SHOWN = new RegExp(`${ESCAPED.source}|[\\u0000-\\u001f\\u007f-\\u009f]`)
const SHOWN_ALL = new RegExp(SHOWN.source, 'g')

/**
 * Text for a message or a listing, always one line: an escaped byte shows as \xNN, and so do
 * the bytes of a control character (a newline in a name is \x0a, an ESC \x1b, U+009B \xc2\x9b),
 * so that no name can break a line or speak to the terminal. A backslash shows as itself.
 */
export function nameShown(s: string): string {
  if (!SHOWN.test(s)) return s
  return s.replace(SHOWN_ALL, (c) => {
    const code = c.charCodeAt(0)
    if (code >= 0xdc80) return `\\x${(code - 0xdc00).toString(16)}`
    return [...Buffer.from(c, 'utf8')].map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('')
  })
}
