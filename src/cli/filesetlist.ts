// `prism fileset list`, the command's body: the rows, the table and the --json value, shared
// by the oclif command (src/commands/fileset/list.ts) and bin/run.js's start-up fast path for
// `fileset list [--space|--no-space] [--json] [-i IMAGE] [--wait N]` (at 10,000 filesets
// oclif's start-up was two thirds of the command: bench/README.md, "Scale"). Both paths format
// through this module, so their output, --json, errors and exit statuses are the same bytes;
// it must never format a row in a way the other path would not.
import {filesetById, listFilesets} from '../fs/filesets.js'
import {allFilesetSpace} from '../fs/space.js'
import {FILESET_LOCALITY_MASK, localityCode, showLocality} from '../format/locality.js'
import type {Volume} from '../fs/volume.js'
import {findImage, parseWait} from './locate.js'
import {humanSize, table} from './output.js'
import {errorLine, failureOf, notice} from './notices.js'
import {withSession} from './session.js'
import {catchSignals} from './signals.js'

const STATES = ['free', 'active', 'expanding', 'deleting']
const MODES = ['', 'sync', 'async', 'lazy']

/** One fileset as `fileset list --json` gives it (key order is the output's). */
export interface FilesetRow {
  name: string
  id: number
  parent: string | null
  created: string
  state: string
  mode: string | null
  rootIno: number
  expansion?: {done: number, known: number}
  referenced?: number
  unique?: number
  files?: number
  dirs?: number
  coaw: {setting: string, copiedBytes: number, rewrites: number}
}

/**
 * The rows of every fileset, by id; with `space`, REFER and UNIQUE too (a walk of every
 * fileset). A fileset whose tree the damage keeps from being walked has none (the table shows
 * `?`): each is handed to `onDamage` as one line.
 */
export function filesetRows(vol: Volume, space: boolean, onDamage?: (message: string) => void): FilesetRow[] {
  const list = listFilesets(vol)
  const sp = space ? allFilesetSpace(vol, list, (f, e) => onDamage?.(`fileset '${f.name}': REFER and UNIQUE cannot be counted: ${e.message}`)) : null
  const rows: FilesetRow[] = new Array(list.length)
  const when = new Date(0)
  for (let i = 0; i < list.length; i++) {
    const f = list[i]
    when.setTime(f.created)
    // Keys are added in the order --json shows them (coaw last).
    const row = {
      name: f.name, id: f.id, parent: f.parentId ? filesetById(vol, f.parentId)?.name ?? `#${f.parentId}` : null,
      created: when.toISOString(), state: STATES[f.state] ?? String(f.state), mode: MODES[f.mode] || null, rootIno: f.rootIno,
    } as FilesetRow
    if (f.state === 2) row.expansion = {done: f.dirsDone, known: Math.max(f.dirsTotal, f.dirsDone)}
    const s = sp?.get(f.id)
    if (s) {
      row.referenced = s.referencedBlocks * 4096
      row.unique = s.uniqueBlocks * 4096
      row.files = s.files
      row.dirs = s.dirs
    }
    row.coaw = {setting: showLocality(localityCode(f.flags & FILESET_LOCALITY_MASK)), copiedBytes: f.coawCopied * 4096, rewrites: f.coawRewrites}
    rows[i] = row
  }
  return rows
}

/** A column of the table, by the name `-o` takes (zfs list -o). */
interface Column {
  head: string
  /** numbers: right-aligned */
  right: boolean
  /** needs REFER and UNIQUE counted: the walk of every fileset */
  space: boolean
  /** the cell; `exact`: -p, numbers whole (bytes) and times in seconds since the epoch */
  cell(r: FilesetRow, exact: boolean): string
  /** the --json keys it gives (in this order) */
  keys: Array<keyof FilesetRow>
}

const size = (bytes: number | undefined, exact: boolean) => bytes === undefined ? '?' : exact ? String(bytes) : humanSize(bytes)
const count = (n: number | undefined) => n === undefined ? '?' : String(n)

/** Every column, in the order `-o all` shows them. */
export const COLUMNS: Record<string, Column> = {
  name: {head: 'NAME', right: false, space: false, cell: (r) => r.name, keys: ['name']},
  id: {head: 'ID', right: true, space: false, cell: (r) => String(r.id), keys: ['id']},
  parent: {head: 'PARENT', right: false, space: false, cell: (r) => r.parent ?? '-', keys: ['parent']},
  created: {
    head: 'CREATED', right: false, space: false, keys: ['created'],
    cell: (r, exact) => exact ? String(Math.floor(Date.parse(r.created) / 1000)) : r.created.replace('T', ' ').slice(0, 19),
  },
  state: {head: 'STATE', right: false, space: false, cell: (r) => r.expansion ? `${r.state} ${r.expansion.done}/${r.expansion.known}` : r.state, keys: ['state', 'expansion']},
  mode: {head: 'MODE', right: false, space: false, cell: (r) => r.mode ?? '-', keys: ['mode']},
  refer: {head: 'REFER', right: true, space: true, cell: (r, exact) => size(r.referenced, exact), keys: ['referenced']},
  unique: {head: 'UNIQUE', right: true, space: true, cell: (r, exact) => size(r.unique, exact), keys: ['unique']},
  files: {head: 'FILES', right: true, space: true, cell: (r) => count(r.files), keys: ['files']},
  dirs: {head: 'DIRS', right: true, space: true, cell: (r) => count(r.dirs), keys: ['dirs']},
  coaw: {head: 'COAW', right: true, space: false, cell: (r, exact) => size(r.coaw.copiedBytes, exact), keys: ['coaw']},
  rewrites: {head: 'REWRITES', right: true, space: false, cell: (r) => String(r.coaw.rewrites), keys: ['coaw']},
  locality: {head: 'LOCALITY', right: false, space: false, cell: (r) => r.coaw.setting, keys: ['coaw']},
}

/** `-o space`: what `zfs list -o space` is to zfs, the columns of what each fileset takes. */
const SHORTHANDS: Record<string, string[]> = {
  space: ['name', 'refer', 'unique', 'coaw'],
  all: Object.keys(COLUMNS),
}

/** The columns without -o: with --no-space, those that need no walk. */
export const DEFAULT_COLUMNS = ['name', 'parent', 'created', 'state', 'refer', 'unique', 'coaw']
export const DEFAULT_COLUMNS_NO_SPACE = DEFAULT_COLUMNS.filter((c) => !COLUMNS[c].space)

/**
 * The columns `-o` names: a comma-separated list of column names and shorthands (space, all),
 * each column at most once. Throws "invalid ..." (a usage error) for anything else.
 */
export function parseColumns(text: string): string[] {
  const out: string[] = []
  for (const word of text.split(',')) {
    const w = word.trim().toLowerCase()
    const names = Object.hasOwn(SHORTHANDS, w) ? SHORTHANDS[w] : Object.hasOwn(COLUMNS, w) ? [w] : null
    if (!names) throw new Error(`invalid column '${word}' for --output: choose from ${Object.keys(COLUMNS).join(', ')}, or space, all`)
    for (const n of names) if (!out.includes(n)) out.push(n)
  }
  return out
}

/** Whether any of `columns` needs REFER and UNIQUE counted. */
export function needsSpace(columns: string[]): boolean {
  return columns.some((c) => COLUMNS[c].space)
}

/** How the table is printed: -H (no head, a tab between fields), -p (exact numbers). */
export interface TableStyle {
  scripted?: boolean
  parsable?: boolean
}

/** The table the command prints (without --json): `columns` of each row. */
export function filesetTable(rows: FilesetRow[], columns: string[], style: TableStyle = {}): string {
  const cols = columns.map((c) => COLUMNS[c])
  const exact = style.parsable === true
  if (style.scripted) {
    // zfs list -H: no head, the fields as they are, one tab between them.
    const lines = new Array<string>(rows.length)
    for (let i = 0; i < rows.length; i++) lines[i] = cols.map((c) => c.cell(rows[i], exact)).join('\t')
    return lines.join('\n')
  }
  const cells: string[][] = new Array(rows.length + 1)
  cells[0] = cols.map((c) => c.head)
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]
    const line = new Array<string>(cols.length)
    for (let k = 0; k < cols.length; k++) line[k] = cols[k].cell(r, exact)
    cells[i + 1] = line
  }
  const right: number[] = []
  for (let k = 0; k < cols.length; k++) if (cols[k].right) right.push(k)
  return table(cells, right)
}

/**
 * The --json value with -o: each row keeps the keys of the columns named, in the order of the
 * columns (coaw, rewrites and locality are the one `coaw` object; state brings its expansion).
 */
export function selectKeys(rows: FilesetRow[], columns: string[]): Array<Partial<FilesetRow>> {
  const keys: Array<keyof FilesetRow> = []
  for (const c of columns) for (const k of COLUMNS[c].keys) if (!keys.includes(k)) keys.push(k)
  return rows.map((r) => {
    const o: Partial<FilesetRow> = {}
    for (const k of keys) if (r[k] !== undefined) (o as Record<string, unknown>)[k] = r[k]
    return o
  })
}

/**
 * A --json value as oclif's logJson writes it when it does not colour (indented by two, one
 * newline): the same bytes, as its tokens joined are JSON.stringify's text.
 */
export function jsonText(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`
}

interface ListFlags {
  /** --space / --no-space as given; undefined when neither was */
  space?: boolean
  json: boolean
  image?: string
  wait: number
  /** -o as given */
  output?: string
  scripted: boolean
  /** -p */
  parsable: boolean
}

/** The flags' columns: -o's, else the default (without the space columns for --no-space). */
export function columnsOf(flags: {space?: boolean, output?: string}): string[] {
  if (flags.output !== undefined) return parseColumns(flags.output)
  return flags.space === false ? DEFAULT_COLUMNS_NO_SPACE : DEFAULT_COLUMNS
}

/**
 * Parses exactly `[--space | --no-space | -o COLUMNS] [-H] [-p] [--json] [-i IMAGE | --image
 * IMAGE | --image=IMAGE] [--wait N | --wait=N]`, each at most once (-o also as --output
 * COLUMNS and --output=COLUMNS), with valid columns; null for anything else (help, an unknown
 * or repeated flag, a value that looks like a flag, `--`, a positional argument, -o with
 * --space: oclif says what is wrong with it).
 */
export function parseListArgs(argv: string[]): ListFlags | null {
  const c: ListFlags = {json: false, wait: 5, scripted: false, parsable: false}
  const seen = new Set<string>()
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i]
    let v: string | null = null
    if (a.startsWith('--') && a.includes('=')) {
      v = a.slice(a.indexOf('=') + 1)
      a = a.slice(0, a.indexOf('='))
    }
    const key = a === '-i' ? '--image' : a === '-o' ? '--output' : a === '--no-space' ? '--space' : a
    if (seen.has(key)) return null
    seen.add(key)
    if (a === '--space' || a === '--no-space' || a === '--json' || a === '-H' || a === '-p') {
      if (v !== null) return null
      if (a === '--json') c.json = true
      else if (a === '-H') c.scripted = true
      else if (a === '-p') c.parsable = true
      else c.space = a === '--space'
    } else if (a === '-i' || a === '--image' || a === '--wait' || a === '-o' || a === '--output') {
      if (v === null) {
        if (i + 1 >= argv.length || argv[i + 1].startsWith('-')) return null
        v = argv[++i]
      }
      if (a === '--wait') {
        const s = parseWait(v)
        if (s === null) return null
        c.wait = s
      } else if (a === '-o' || a === '--output') {
        c.output = v
      } else {
        if (v === '') return null
        c.image = v
      }
    } else {
      return null
    }
  }
  if (c.output !== undefined) {
    if (c.space !== undefined) return null
    try {
      parseColumns(c.output)
    } catch {
      return null
    }
  }
  return c
}

/** The --json value: the whole rows, or with -o the keys of its columns. */
export function listValue(rows: FilesetRow[], columns: string[], output: string | undefined): Array<Partial<FilesetRow>> {
  return output === undefined ? rows : selectKeys(rows, columns)
}

/** What the command prints for `rows`: the --json value, or the table. */
export function listText(rows: FilesetRow[], columns: string[], flags: {json: boolean, output?: string, scripted?: boolean, parsable?: boolean}): string {
  if (flags.json) return jsonText(listValue(rows, columns, flags.output))
  const text = filesetTable(rows, columns, flags)
  return flags.scripted && rows.length === 0 ? '' : `${text}\n`
}

/**
 * The fast path: the exit status, or null when the arguments need oclif. --json on a terminal
 * goes to oclif too: there oclif may colour JSON with a user's theme file.
 */
export async function fastFilesetList(argv: string[]): Promise<number | null> {
  const c = parseListArgs(argv)
  if (!c) return null
  // oclif's other way to ask for --json: $PRISM_CONTENT_TYPE.
  if (process.env.PRISM_CONTENT_TYPE?.toLowerCase() === 'json') c.json = true
  if (c.json && process.stdout.isTTY) return null
  catchSignals()
  try {
    const image = findImage(c.image)
    // (a fileset the damage keeps from being walked: one line each, `?` for its space, exit 1)
    const damaged: string[] = []
    const columns = columnsOf(c)
    const rows = await withSession(image, false, {wait: c.wait, onNotice: notice}, (vol) => filesetRows(vol, needsSpace(columns), (m) => damaged.push(m)))
    for (const m of damaged) process.stderr.write(errorLine(m))
    process.stdout.write(listText(rows, columns, c))
    return damaged.length ? 1 : 0
  } catch (e) {
    const f = failureOf(e, false, 'fileset list')
    if (c.json) process.stdout.write(jsonText({error: {code: f.code, message: f.message}}))
    process.stderr.write(errorLine(f.message))
    if (f.stack && process.env.PRISM_DEBUG) process.stderr.write(`${f.stack}\n`)
    return f.status
  }
}
