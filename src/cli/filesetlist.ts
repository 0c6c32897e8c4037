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

/** The table the command prints (without --json). */
export function filesetTable(rows: FilesetRow[], space: boolean): string {
  const head = ['NAME', 'PARENT', 'CREATED', 'STATE', ...(space ? ['REFER', 'UNIQUE'] : []), 'COAW']
  const cells: string[][] = new Array(rows.length + 1)
  cells[0] = head
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]
    const state = r.expansion ? `${r.state} ${r.expansion.done}/${r.expansion.known}` : r.state
    const when = r.created.replace('T', ' ').slice(0, 19)
    cells[i + 1] = space
      ? [r.name, r.parent ?? '-', when, state, r.referenced === undefined ? '?' : humanSize(r.referenced), r.unique === undefined ? '?' : humanSize(r.unique), humanSize(r.coaw.copiedBytes)]
      : [r.name, r.parent ?? '-', when, state, humanSize(r.coaw.copiedBytes)]
  }
  return table(cells, space ? [4, 5, 6] : [4])
}

/**
 * A --json value as oclif's logJson writes it when it does not colour (indented by two, one
 * newline): the same bytes, as its tokens joined are JSON.stringify's text.
 */
export function jsonText(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`
}

interface ListFlags {
  space: boolean
  json: boolean
  image?: string
  wait: number
}

/**
 * Parses exactly `[--space | --no-space] [--json] [-i IMAGE | --image IMAGE | --image=IMAGE]
 * [--wait N | --wait=N]`, each at most once; null for anything else (help, an unknown or
 * repeated flag, a value that looks like a flag, `--`, a positional argument: oclif says what
 * is wrong with it).
 */
export function parseListArgs(argv: string[]): ListFlags | null {
  const c: ListFlags = {space: true, json: false, wait: 5}
  const seen = new Set<string>()
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i]
    let v: string | null = null
    if (a.startsWith('--') && a.includes('=')) {
      v = a.slice(a.indexOf('=') + 1)
      a = a.slice(0, a.indexOf('='))
    }
    const key = a === '-i' ? '--image' : a === '--no-space' ? '--space' : a
    if (seen.has(key)) return null
    seen.add(key)
    if (a === '--space' || a === '--no-space' || a === '--json') {
      if (v !== null) return null
      if (a === '--json') c.json = true
      else c.space = a === '--space'
    } else if (a === '-i' || a === '--image' || a === '--wait') {
      if (v === null) {
        if (i + 1 >= argv.length || argv[i + 1].startsWith('-')) return null
        v = argv[++i]
      }
      if (a === '--wait') {
        const s = parseWait(v)
        if (s === null) return null
        c.wait = s
      } else {
        if (v === '') return null
        c.image = v
      }
    } else {
      return null
    }
  }
  return c
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
    const rows = await withSession(image, false, {wait: c.wait, onNotice: notice}, (vol) => filesetRows(vol, c.space, (m) => damaged.push(m)))
    for (const m of damaged) process.stderr.write(errorLine(m))
    process.stdout.write(c.json ? jsonText(rows) : `${filesetTable(rows, c.space)}\n`)
    return damaged.length ? 1 : 0
  } catch (e) {
    const f = failureOf(e, false, 'fileset list')
    if (c.json) process.stdout.write(jsonText({error: {code: f.code, message: f.message}}))
    process.stderr.write(errorLine(f.message))
    if (f.stack && process.env.PRISM_DEBUG) process.stderr.write(`${f.stack}\n`)
    return f.status
  }
}
