// Formatting for human output: sizes, modes, times, tables. No library imports.

export function humanSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let v = bytes
  let u = 0
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++ }
  return u === 0 ? `${v} B` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`
}

/** Parses 512, 64K, 16M, 8G, 1T (powers of 1024; a trailing 'B' or 'iB' is allowed). */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?$/i.exec(text.trim())
  if (!m) throw new Error(`invalid size '${text}' (examples: 4096, 64M, 8G)`)
  const mult = {'': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4, P: 1024 ** 5}[m[2].toUpperCase() as '' | 'K' | 'M' | 'G' | 'T' | 'P']
  const v = Math.floor(Number(m[1]) * mult)
  if (!Number.isSafeInteger(v)) throw new Error(`size '${text}' is too large`)
  return v
}

/** ls's type letter of each kind of inode. */
const TYPE_LETTER: Record<string, string> = {file: '-', dir: 'd', symlink: 'l', chardev: 'c', blockdev: 'b', fifo: 'p', socket: 's'}

export function modeString(type: string, perm: number): string {
  const t = TYPE_LETTER[type] ?? '?'
  const rwx = (bits: number, special: boolean, ch: string) =>
    (bits & 4 ? 'r' : '-') + (bits & 2 ? 'w' : '-') + (special ? (bits & 1 ? ch : ch.toUpperCase()) : bits & 1 ? 'x' : '-')
  return t + rwx((perm >> 6) & 7, !!(perm & 0o4000), 's') + rwx((perm >> 3) & 7, !!(perm & 0o2000), 's') + rwx(perm & 7, !!(perm & 0o1000), 't')
}

/** An ISO 8601 UTC time to the nanosecond (2024-05-01T12:00:00.123456789Z). */
export function isoTime(t: {s: number, ns: number}): string {
  const d = new Date(t.s * 1000)
  // (a time past what a Date holds, ±275,000 years: seconds since the epoch, as `@S.N`)
  if (Number.isNaN(d.getTime())) return rawTime(t)
  return d.toISOString().replace(/\.\d{3}Z$/, `.${String(t.ns).padStart(9, '0')}Z`)
}

/** A time as `@SECONDS.NANOSECONDS` (what `prism touch -d` takes). */
function rawTime(t: {s: number, ns: number}): string {
  return `@${t.s}.${String(t.ns).padStart(9, '0')}`
}

export function lsTime(t: {s: number, ns: number}): string {
  const d = new Date(t.s * 1000)
  if (Number.isNaN(d.getTime())) return rawTime(t)
  const pad = (n: number) => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`
}

/** Left-aligned text columns; columns listed in `right` are right-aligned. */
export function table(rows: string[][], right: number[] = []): string {
  if (rows.length === 0) return ''
  // Loops rather than a spread and an array per column: `fileset list` prints 10,000 rows.
  const widths = new Array<number>(rows[0].length).fill(0)
  for (const r of rows) {
    for (let i = 0; i < widths.length; i++) {
      const n = (r[i] ?? '').length
      if (n > widths[i]) widths[i] = n
    }
  }
  const isRight: boolean[] = []
  for (const i of right) isRight[i] = true
  const lines = new Array<string>(rows.length)
  for (let k = 0; k < rows.length; k++) {
    const r = rows[k]
    let line = ''
    for (let i = 0; i < r.length; i++) {
      // The last column is not padded unless right-aligned (no trailing blanks).
      const c = r[i]
      const cell = isRight[i] ? c.padStart(widths[i]) : i === r.length - 1 ? c : c.padEnd(widths[i])
      line += i === 0 ? cell : `  ${cell}`
    }
    lines[k] = line
  }
  return lines.join('\n')
}
