// Finding the image and parsing FILESET:/path arguments. Kept free of library imports so
// that command start-up stays cheap.
import fs from 'node:fs'
import path from 'node:path'
import {PrismError} from '../errors.js'

const MAGIC = Buffer.from('PRISMIMG', 'latin1')

function looksLikeImage(file: string): boolean {
  let fd: number | undefined
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
    const b = Buffer.alloc(8)
    return fs.readSync(fd, b, 0, 8, 0) === 8 && b.equals(MAGIC)
  } catch {
    return false
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}

/**
 * --image, else $PRISM_IMAGE, else the single Prism image in the current directory. Refused
 * when standard output is that image file (`prism cat root:/f >> disk.img`): the command's
 * output would be written into the image.
 */
export function findImage(flag: string | undefined, cwd = process.cwd()): string {
  const p = locateImage(flag, cwd)
  let st: fs.BigIntStats | undefined
  try {
    st = fs.statSync(p, {bigint: true, throwIfNoEntry: false})
  } catch {
    st = undefined // opening it says why
  }
  // (opening a FIFO would wait for a writer, forever: refused as every other non-file is)
  if (st && !st.isFile()) throw new PrismError('EBADIMAGE', `${p}: not a regular file`)
  if (st?.isFile()) {
    let out: fs.BigIntStats | undefined
    try {
      out = fs.fstatSync(1, {bigint: true})
    } catch {
      out = undefined // closed
    }
    if (out && out.dev === st.dev && out.ino === st.ino) throw new PrismError('EUSAGE', `standard output is the image ${p} itself: send it elsewhere`)
  }
  return p
}

function locateImage(flag: string | undefined, cwd: string): string {
  if (flag) return flag
  const env = process.env.PRISM_IMAGE
  if (env) return env
  const found: string[] = []
  // One image under several names (a symlink to it, a hard link) is one image: the first name.
  const seen = new Set<string>()
  let names: string[] = []
  try {
    names = fs.readdirSync(cwd)
  } catch {
    // unreadable directory: nothing found
  }
  for (const n of names.sort()) {
    const p = path.join(cwd, n)
    let st: fs.Stats
    try {
      st = fs.statSync(p)
    } catch {
      continue
    }
    const id = `${st.dev}:${st.ino}`
    if (seen.has(id)) continue
    if (st.isFile() && st.size >= 4096 * 64 && looksLikeImage(p)) {
      seen.add(id)
      found.push(n)
    }
  }
  if (found.length === 1) return path.join(cwd, found[0])
  if (found.length === 0) {
    throw new PrismError('ENOIMAGE', 'no Prism image in the current directory; name one with --image FILE or PRISM_IMAGE=FILE')
  }
  throw new PrismError('ENOIMAGE', `several Prism images here (${found.join(', ')}); name one with --image FILE or PRISM_IMAGE=FILE`)
}

export interface ImageLoc {
  fileset: string
  path: string
}

const LOC = /^([A-Za-z0-9_][A-Za-z0-9._-]*):(.*)$/s

/** FILESET:/path (an empty path means the root); anything else is a host path. */
export function parseImageLoc(arg: string): ImageLoc | null {
  const m = LOC.exec(arg)
  if (!m) return null
  const p = m[2] === '' ? '/' : m[2]
  return {fileset: m[1], path: p.startsWith('/') ? p : '/' + p}
}

/** An argument that must name something inside the image. */
export function imageLoc(arg: string): ImageLoc {
  const loc = parseImageLoc(arg)
  if (!loc) throw new PrismError('EUSAGE', `'${arg}' is not an image path: write FILESET:/path (for example root:${arg.startsWith('/') ? arg : '/' + arg})`)
  return loc
}

export type Location = {kind: 'host', path: string} | {kind: 'image', fileset: string, path: string}

export function location(arg: string): Location {
  const loc = parseImageLoc(arg)
  return loc ? {kind: 'image', ...loc} : {kind: 'host', path: arg}
}

/** --wait SECONDS: a number of seconds, fractions allowed (0.5, .25); null if it is not one. */
export function parseWait(text: string): number | null {
  return /^(\d+(\.\d*)?|\.\d+)$/.test(text) ? Number(text) : null
}

export function showLoc(l: ImageLoc): string {
  return `${l.fileset}:${l.path}`
}
