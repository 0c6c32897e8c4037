// Commands on an image that a prism server holds (it is mounted). A command that only reads the
// image (readsOnly) asks the server for a snapshot (src/device/snapshot.ts): the server commits
// and logs the pre-image of every block it overwrites from then on, and the command reads the
// image file as it was at that commit, with its usual code, while the mounts go on being served
// ($PRISM_SERVED_SNAPSHOT=0: a lend instead). Any other command asks the server to lend it
// (src/server/image.ts lend): the server commits, closes the image and holds its FUSE requests
// until this process exits, however it exits; the command then runs exactly as it does alone
// (same output, progress, --json and exit codes), without waiting on a lock. Orphans the
// mounts hold open are passed on so that this process leaves them alone ($PRISM_HELD_ORPHANS,
// src/fs/volume.ts). `fsck --repair` is refused while served, as e2fsck refuses a mounted
// filesystem.
// `prism clone` (a new fileset, a graft, with or without --replace: the command reads the
// replacements' host files and streams them), `prism expand` (src/cli/servedexpand.ts,
// src/server/slicedclone.ts), `prism rm` and `prism fileset delete`
// (src/cli/servedremove.ts) are asked of the server instead (askedOfServer): it does them in
// slices between FUSE requests, so the mounts keep answering meanwhile.
// PRISM_SERVED_SLICES=0 makes them borrow the image as the other commands do.
// `prism cp HOST... FILESET:/path` is asked of the server too (copiesHostIn, src/cli/copyin.ts):
// the command streams the host tree and the server copies it in slices. So are `prism cp` and
// `prism mv` with every path in the image, and `prism defrag` (src/cli/servedcopy.ts), and
// `prism chmod`, `prism chown` (-R: a tree walk) and `prism write`, which reads its standard
// input to its end and sends it (src/cli/servedattrs.ts). The short commands that change the
// image (mkdir, touch, truncate, ln, mknod, noclone, xattr set and rm, set, fileset create and
// rename) send their operation to the server, which runs it in one step (src/ops/short.ts,
// PrismCommand.short). `prism import` (src/cli/servedimport.ts): the command streams the
// archive (standard input read first, to a temporary file) and the server imports it in
// slices. Only rare ones still borrow the image: cp mixing host and image sources, and scan
// --incremental's save (borrowAfterSnapshot).
// It must never let the command reach a mount of the image it borrowed (its server cannot
// answer until the command ends: that would deadlock): host paths, stdin, stdout and stderr on
// such a mount are refused before the image is borrowed. A command reading a snapshot borrows
// nothing, and may reach the mounts (its output written there), unless it borrows at its end.
// Kept free of library imports.
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {findImage, parseImageLoc} from './locate.js'
import {askServerOf, logPath, request} from '../server/paths.js'

/** Commands that never borrow: they talk to the server themselves, or touch no image. */
const OWN = new Set(['mount', 'umount', 'serve', 'help', 'autocomplete', 'mkfs', 'commands', 'version'])

/** clone's flags that take a value (the next argument, unless given as --flag=value) */
const CLONE_VALUED = new Set(['-x', '--exclude', '--exclude-from', '-r', '--replace', '--mode', '-i', '--image', '--wait'])

/**
 * Whether command `argv` is asked of the image's server rather than borrowing the image:
 * `prism clone` (a new fileset or a graft, --replace or not), `prism expand` (not the background
 * expander), `prism rm`, `prism fileset delete`, `prism mv`, `prism defrag`, `prism cp` with
 * every path in the image, `prism chmod`, `prism chown`, `prism write`, and the short
 * commands that change the image (shortCommand).
 */
export function askedOfServer(argv: string[]): boolean {
  if (process.env.PRISM_SERVED_SLICES === '0') return false
  if (argv.includes('--help') || argv.includes('-h')) return false
  if (argv[0] === 'expand') return !argv.includes('--background')
  // Removals: detached at once, freed in slices (src/cli/servedremove.ts).
  if (argv[0] === 'rm' || argv[0] === 'fileset:delete' || (argv[0] === 'fileset' && argv[1] === 'delete')) return true
  // Copies and moves within the image, and defrag: run in slices (src/cli/servedcopy.ts).
  if (argv[0] === 'mv' || argv[0] === 'defrag') return true
  // Modes, owners (a walk with -R) and a file's content: in slices (src/cli/servedattrs.ts).
  if (argv[0] === 'chmod' || argv[0] === 'chown' || argv[0] === 'write') return true
  // The short commands that change the image: one step in the server (src/ops/short.ts).
  if (shortCommand(argv)) return true
  if (argv[0] === 'cp') {
    const pos = positionals(argv)
    return pos.length >= 2 && pos.every((a) => parseImageLoc(a) !== null)
  }
  if (argv[0] !== 'clone') return false
  const pos: string[] = []
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--') {
      pos.push(...argv.slice(i + 1))
      break
    }
    if (CLONE_VALUED.has(a)) i++
    else if (!a.startsWith('-') || a === '-') pos.push(a)
  }
  // A new fileset, or a graft (DST = FILESET:/path), --replace or not (src/server/slicedclone.ts).
  return pos.length >= 1
}

/** Commands that src/ops/short.ts runs (the server, on a served image, in one step). */
const SHORT_COMMANDS = new Set(['mkdir', 'touch', 'truncate', 'noclone', 'ln', 'mknod', 'set'])

/** Whether argv is one of the short commands that change the image (src/ops/short.ts SHORT). */
function shortCommand(argv: string[]): boolean {
  if (SHORT_COMMANDS.has(argv[0])) return true
  if (argv[0] === 'fileset:create' || argv[0] === 'fileset:rename') return true
  const sub = positionals(argv)[0]
  if (argv[0] === 'fileset') return sub === 'create' || sub === 'rename'
  if (argv[0] === 'xattr') return sub === 'set' || sub === 'rm'
  return false
}

/** Set when this command is to be asked of the server of its image (askedOfServer). */
export function servedTarget(): {sock: string, image: string} | null {
  return ((globalThis as Record<symbol, unknown>)[Symbol.for('prism.served')] as {sock: string, image: string} | undefined) ?? null
}

function imageArg(argv: string[]): string | undefined {
  const end = argv.indexOf('--')
  const args = end < 0 ? argv : argv.slice(0, end)
  const i = args.findIndex((a) => a === '-i' || a === '--image')
  return i >= 0 ? args[i + 1] : args.find((a) => a.startsWith('--image='))?.slice(8)
}

function devOf(st: fs.Stats): string {
  const d = Number(st.dev)
  return `${(d >>> 8) & 0xfff}:${(d & 0xff) | ((d >>> 12) & 0xfff00)}`
}

interface ServedMount {
  mountpoint: string
  device: string | undefined
}

/**
 * Has the kernel write back what it holds dirty of each mount of the image (syncfs): pages a
 * program changed through a shared mapping and has not synced are in no request the server
 * has had, so a clone, a `cat` or an export taken now would miss them, where a local
 * filesystem's readers see them at once (one page cache). Run by the command, never by the
 * server (a server must not touch its own mounts); a mount that fails to answer is passed by.
 */
async function flushMounts(mounts: ServedMount[]): Promise<void> {
  if (mounts.length === 0) return
  const {sys} = await import('../sys.js')
  const s = sys()
  if (!s.syncfs) return
  for (const m of mounts) {
    let fd: number
    try {
      fd = fs.openSync(m.mountpoint, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY)
    } catch {
      continue
    }
    try {
      s.syncfs(fd)
    } catch {
      // (nothing to be done here: the command goes on with what the server has)
    } finally {
      fs.closeSync(fd)
    }
  }
}

/** Why the command would reach a mount of the image, or null. */
function reachesMount(argv0: string, argv: string[], mounts: ServedMount[]): string | null {
  const devs = new Set(mounts.map((m) => m.device).filter((d): d is string => d !== undefined))
  const names = ['stdin', 'stdout', 'stderr']
  for (let fd = 0; fd < 3; fd++) {
    try {
      if (devs.has(devOf(fs.fstatSync(fd)))) return `its ${names[fd]} is a file on a mount of this image`
    } catch {
      // closed
    }
  }
  const onMount = (p: string): boolean => {
    try {
      return devs.has(devOf(fs.statSync(p)))
    } catch {
      return false
    }
  }
  // Commands that write host paths (a new file: its directory counts) or read a tree.
  if (['cp', 'import', 'export'].includes(argv0) && onMount('.')) return 'the current directory is on a mount of this image'
  for (const a of argv) {
    if (a.startsWith('-') || parseImageLoc(a)) continue
    let st: fs.Stats
    try {
      st = fs.statSync(a)
    } catch {
      // not there (yet): the directory it would be made in
      if (!a.includes('/')) continue
      let up = path.dirname(path.resolve(a))
      while (!fs.existsSync(up) && up !== path.dirname(up)) up = path.dirname(up)
      if (onMount(up)) return `${a} is on a mount of this image`
      continue
    }
    if (devs.has(devOf(st))) return `${a} is on a mount of this image`
    if (st.isDirectory()) {
      const real = fs.realpathSync(a)
      const inside = mounts.find((m) => m.mountpoint.startsWith(real === '/' ? '/' : real + '/'))
      if (inside) return `${a} holds ${inside.mountpoint}, a mount of this image`
    }
  }
  return null
}

/** Flags that take a value (the token after them is not an argument), of the commands readsOnly looks into. */
const VALUED = new Set(['-i', '--image', '--wait', '-e', '--encoding', '-f', '--value-file'])

/** The positional arguments of argv (after the command name). */
function positionals(argv: string[]): string[] {
  const out: string[] = []
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--') { out.push(...argv.slice(i + 1)); break }
    if (VALUED.has(a)) { i++; continue }
    if (!a.startsWith('-') || a === '-') out.push(a)
  }
  return out
}

/**
 * Whether the command only reads the image, so that a snapshot serves it: cat, ls, stat,
 * status, df, du, diff, export, fsck (a repair is refused while served), scan (with
 * --incremental it saves what it learned afterwards, borrowing the image), fileset list, xattr get and list, and cp to a host
 * path. A command wrongly taken for a reader fails (ELOCKED) when it opens the image for
 * writing, changing nothing.
 */
export function readsOnly(argv: string[]): boolean {
  const cmd = argv[0]
  if (['cat', 'ls', 'stat', 'status', 'df', 'du', 'diff', 'export', 'fsck'].includes(cmd)) return true
  if (cmd === 'scan') return true // (--incremental then borrows the image to save its results: borrowAfterSnapshot)
  const args = positionals(argv)
  if (cmd === 'fileset') return args[0] === 'list'
  if (cmd === 'xattr') return args[0] === 'get' || args[0] === 'list'
  if (cmd === 'cp') return args.length >= 2 && !parseImageLoc(args[args.length - 1])
  return false
}

/** A command that reads a snapshot, then borrows the image to write (borrowAfterSnapshot). */
function borrowsAtEnd(argv: string[]): boolean {
  return argv[0] === 'scan' && argv.some((a) => a === '--incremental' || a.startsWith('--incremental='))
}

/**
 * Asks the server listening on `sock` for a snapshot of `image` for this process; true once
 * it is taken and this process reads it (src/device/snapshot.ts openImageDevice), false when
 * the server cannot take one (a server of an older prism: the caller borrows instead).
 */
async function takeSnapshot(sock: string, image: string): Promise<boolean> {
  const st = fs.statSync(image, {bigint: true})
  const c = net.createConnection(sock)
  const reply = await new Promise<{ok: boolean, log?: string, message?: string, code?: string} | null>((resolve) => {
    let buf = ''
    c.setEncoding('utf8')
    c.on('connect', () => c.write(JSON.stringify({op: 'snapshot', pid: process.pid}) + '\n'))
    c.on('data', (d: string) => {
      buf += d
      const nl = buf.indexOf('\n')
      if (nl >= 0) resolve(JSON.parse(buf.slice(0, nl)) as {ok: boolean, log?: string})
    })
    c.on('error', () => resolve(null))
    c.on('close', () => resolve(null))
  })
  if (!reply?.ok || typeof reply.log !== 'string') {
    c.destroy()
    if (reply?.code === 'EBUSY') die(`the server of ${path.basename(image)} could not take a snapshot: ${reply.message}`, 3)
    return false
  }
  // Kept open, without keeping this process alive, and no longer read by Node: its end (this
  // process exits, whatever way) ends the snapshot; the server's end says the server is gone.
  c.pause()
  c.unref()
  const sockFd = (c as unknown as {_handle?: {fd?: number}})._handle?.fd ?? -1
  let logFd: number
  try {
    logFd = fs.openSync(reply.log, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
  } catch (e) {
    c.destroy()
    return die(`cannot read the snapshot's pre-image log ${reply.log}: ${(e as Error).message}`, 7)
  }
  fs.rmSync(reply.log, {force: true}) // open here and in the server: gone with both
  const one = Buffer.alloc(1)
  let checked = 0
  let alive = true
  const held = {
    dev: st.dev, ino: st.ino, logFd, sock, image,
    /** ends the snapshot (the server stops logging for it once the connection closes) */
    end: (): void => {
      c.destroy()
      fs.closeSync(logFd)
    },
    // Whether the server still holds the image: its end of the connection is open (read(2)
    // finds nothing to read yet). Asked at most once a millisecond: an exception a time.
    alive: (): boolean => {
      if (!alive || sockFd < 0) return alive
      const now = performance.now()
      if (now - checked < 1) return true
      checked = now
      try {
        alive = fs.readSync(sockFd, one, 0, 1, null) !== 0 // (the server sends nothing more)
      } catch (e) {
        alive = (e as NodeJS.ErrnoException).code === 'EAGAIN'
      }
      return alive
    },
  }
  ;(globalThis as Record<symbol, unknown>)[Symbol.for('prism.snapshot')] = held
  return true
}

/** cp's arguments name host sources and a destination in the image (FILESET:/path). */
function copiesHostIn(argv: string[]): boolean {
  const pos = positionals(argv)
  return pos.length >= 2 && parseImageLoc(pos[pos.length - 1]) !== null && pos.slice(0, -1).every((a) => a !== '-' && parseImageLoc(a) === null)
}

const STDIN = Symbol.for('prism.stdin')

/**
 * `prism write`'s bound on its input: no file in the image can hold more bytes than the whole
 * image file, so an endless or mistaken input (`< /dev/zero`) stops there, with ENOSPC, before
 * it fills $TMPDIR. Nothing when the image cannot be looked at (opening it says why).
 */
export function writeInputLimit(image: string): {limit?: number, limitOf?: string} {
  try {
    const st = fs.statSync(image)
    return st.isFile() ? {limit: st.size, limitOf: `the image ${path.basename(image)}`} : {}
  } catch {
    return {}
  }
}

/**
 * `prism write` (its input), and `prism import -`: reads standard input to its end as the
 * command would (src/ops/spool.ts, src/tar/io.ts openArchive), before the image is borrowed.
 * What it read, or the error reading it, waits for the command in stdinRead().
 */
async function readStdinFirst(cmd: string, args: string[], image: string): Promise<void> {
  if (cmd !== 'write' && !(cmd === 'import' && args.includes('-'))) return
  // Signals are caught from here, not only once the command runs: one that comes while the
  // input is awaited stops the command at once, as it would alone (src/interrupt.ts
  // interruptible), before anything is borrowed.
  const {catchSignals} = await import('./signals.js')
  catchSignals()
  const read: Promise<unknown> = cmd === 'write'
    ? import('../ops/spool.js').then(({Spool}) => Spool.readStdin(writeInputLimit(image)))
    : import('../tar/io.js').then(({openArchive}) => openArchive('-'))
  const got = await read.then((value) => ({value}), (error: unknown) => ({error}))
  const e = (got as {error?: {code?: unknown, exitCode?: unknown}}).error
  if (e?.code === 'EINTR' && typeof e.exitCode === 'number') die('interrupted', e.exitCode)
  ;(globalThis as Record<symbol, unknown>)[STDIN] = got
}

/**
 * What readStdinFirst read of standard input for this command (taken once), or null when it
 * read nothing: the command reads its input itself then.
 */
export function stdinRead<T>(): T | null {
  const g = globalThis as Record<symbol, unknown>
  const got = g[STDIN] as {value?: T, error?: unknown} | undefined
  if (!got) return null
  delete g[STDIN]
  if ('error' in got) throw got.error
  return got.value as T
}

/**
 * The server holding image file `image` and its mount points, or null when none does; its pid
 * is null when it holds the image and does not answer (stopped, hung).
 */
export async function servedBy(image: string): Promise<{pid: number | null, mountpoints: string[]} | null> {
  const ping = await askServerOf(image, {op: 'ping'}, answerMs()).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ETIMEDOUT') throw e
    return 'silent' as const
  })
  if (ping === 'silent') return {pid: null, mountpoints: []}
  if (!ping) return null
  const info = await request(ping.sock, {op: 'list'}, answerMs()).catch(() => null)
  return {pid: Number(ping.reply.pid), mountpoints: ((info?.mounts as ServedMount[] | undefined) ?? []).map((m) => m.mountpoint)}
}

function die(msg: string, code: number): never {
  process.stderr.write(`prism: ${msg}\n`)
  process.exit(code)
}

/**
 * Borrows the image from its server when one holds it (a no-op otherwise, and for commands
 * that need no image). Exits with a one-line error where the command cannot run while served.
 * Returns 'server' for a command to be asked of the server instead (askedOfServer): it then
 * runs through oclif, which finds the server in servedTarget().
 */
export async function borrowIfServed(argv: string[]): Promise<'server' | undefined> {
  // Until the command catches signals itself (src/cli/signals.ts), a signal while this talks
  // to a server ends it with the line every interrupted command prints, and 128 + its number
  // (the connections close with the process: a lent image goes back to its server).
  const onSignal = (sig: NodeJS.Signals): void => die('interrupted', 128 + (os.constants.signals[sig] ?? 2))
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']
  for (const s of signals) process.on(s, onSignal)
  try {
    return await borrowOrAsk(argv)
  } finally {
    for (const s of signals) process.off(s, onSignal)
  }
}

/**
 * What a command says of an image whose server holds it and does not answer within `ms`
 * (stopped with SIGSTOP, under a debugger, hung): with the server's log when it has one.
 */
export function silentServer(image: string, ms: number): string {
  const log = logPath(image)
  return `${path.basename(image)} is held by its prism server, which did not answer within ${ms / 1000} s (stopped or hung?)${fs.existsSync(log) ? `; its log: ${log}` : ''}`
}

/** How long a server has to answer whether it holds the image ($PRISM_SERVER_ANSWER_MS for tests). */
export function answerMs(): number {
  const ms = Number(process.env.PRISM_SERVER_ANSWER_MS)
  return Number.isFinite(ms) && ms > 0 ? ms : 10_000
}

async function borrowOrAsk(argv: string[]): Promise<'server' | undefined> {
  const cmd = argv[0]
  if (cmd === undefined || cmd.startsWith('-') || OWN.has(cmd)) return
  if (argv.includes('--help') || argv.includes('--version')) return
  if (cmd === 'expand' && argv.includes('--background')) return
  let image: string
  try {
    image = findImage(imageArg(argv))
  } catch {
    return // no image (the command says so), or none that exists
  }
  delete process.env.PRISM_HELD_ORPHANS // (a process this one starts borrows for itself)
  // null: nobody holds the image (no socket, a stale one, which is removed, or a server of
  // another file on it)
  const waitMs = answerMs()
  const asked = await askServerOf(image, {op: 'list'}, waitMs).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ETIMEDOUT') throw e
    // It holds the image (its lock) and answers nothing: stopped (SIGSTOP, a debugger) or hung.
    // (the status of a locked image: fsck's is e2fsck's operational error)
    return die(silentServer(image, waitMs), cmd === 'fsck' ? 8 : 3)
  })
  if (!asked) return
  const {sock, reply: info} = asked
  // (not while another command has the image lent: the mounts' requests, the writeback's
  // among them, wait for it to end, and so would this command, past Ctrl-C's reach)
  if (info.lent !== true) await flushMounts((info.mounts as ServedMount[]) ?? [])
  if (askedOfServer(argv)) {
    ;(globalThis as Record<symbol, unknown>)[Symbol.for('prism.served')] = {sock, image}
    return 'server'
  }
  const mounts = (info.mounts as ServedMount[]) ?? []
  const ping = await request(sock, {op: 'ping'}, waitMs).catch(() => null)
  const who = `prism server ${ping?.pid ?? '?'}`
  const fsckRepair = cmd === 'fsck' && argv.some((a) => a === '--repair' || a === '-y' || a === '--fix' || /^-[a-zA-Z]*y/.test(a))
  if (fsckRepair) {
    die(`${path.basename(image)} is mounted (held by ${who}${mounts.length ? `, mounted on ${mounts.map((m) => m.mountpoint).join(', ')}` : ''}): unmount it first (prism umount), as e2fsck refuses a mounted filesystem`, 8)
  }
  const why = reachesMount(cmd, argv.slice(1), mounts)
  const refuse = () => die(`cannot run while ${path.basename(image)} is served: ${why}, and its server cannot answer until the command ends; use a path outside its mounts (or FILESET:/path)`, 1)
  // A command reading a snapshot leaves the server answering the mounts all along, so it may
  // write its output there (`prism export root /mnt/root/backup.tar`, `prism ls > /mnt/x`) or
  // read there: unless it borrows the image at its end (scan --incremental, to save what it
  // learned), or no snapshot can be had (it would borrow the image).
  const snapshot = readsOnly(argv) && process.env.PRISM_SERVED_SNAPSHOT !== '0'
  // The server copies or imports in slices, its mounts answered meanwhile (src/cli/copyin.ts,
  // src/cli/servedimport.ts): so such a command may read its host files, its archive or its
  // standard input from a mount of the image, and write its messages there, as `write` may.
  const slicedIn = process.env.PRISM_SERVED_SLICES !== '0' && ((cmd === 'cp' && copiesHostIn(argv)) || cmd === 'import')
  const mayReachMounts = (snapshot && !borrowsAtEnd(argv)) || slicedIn
  if (why && !mayReachMounts) refuse()
  if (snapshot && await takeSnapshot(sock, image)) return
  // Standard input that goes into the image is read to its end before the image is borrowed:
  // a slow producer must not hold the mounts (the command takes it from stdinRead()).
  if (process.env.PRISM_SERVED_SLICES !== '0') await readStdinFirst(cmd, argv.slice(1), image)
  if (slicedIn) {
    ;(globalThis as Record<symbol, unknown>)[Symbol.for('prism.servedCopy')] = {sock, image}
    return
  }
  if (why) refuse()
  await borrow(sock, image, argv)
}

/**
 * For a command that read a snapshot and then has a little to write (`scan --incremental`
 * saves what it learned): ends the snapshot and borrows the image, as a command that writes
 * does. Nothing to do when this process holds no snapshot.
 */
export async function borrowAfterSnapshot(argv: string[]): Promise<void> {
  const key = Symbol.for('prism.snapshot')
  const held = (globalThis as Record<symbol, unknown>)[key] as {sock: string, image: string, end: () => void} | undefined
  if (!held) return
  held.end()
  delete (globalThis as Record<symbol, unknown>)[key]
  await borrow(held.sock, held.image, argv)
}

/** Asks the server on `sock` to lend image file `image` to this process until it exits. */
async function borrow(sock: string, image: string, argv: string[]): Promise<void> {
  // Where this command reports the private copies it makes of shared inodes (src/fs/volume.ts
  // lendObserver): the server reads it when it takes the image back, and removes it.
  // It goes beside the server's socket, in a directory only this user may enter; $TMPDIR is
  // the fallback (a borrower of another user than the server's cannot write there), so an
  // unwritable or missing $TMPDIR does not stop the command.
  const name = `prism-lend-${process.pid}-${Date.now().toString(36)}`
  let report = ''
  let reportFd = -1
  let failed: Error | undefined
  for (const dir of [path.dirname(sock), os.tmpdir()]) {
    report = path.join(dir, name)
    try {
      reportFd = fs.openSync(report, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600)
      break
    } catch (e) {
      failed ??= e as Error
    }
  }
  if (reportFd < 0) die(`cannot make the report file ${name} a command on a served image needs, beside the server's socket or in $TMPDIR: ${failed!.message}`, 1)
  const held = await new Promise<{held: number[], open: string[], mounted: unknown[]} | null>((resolve, reject) => {
    let buf = ''
    const c = net.createConnection(sock)
    c.setEncoding('utf8')
    c.on('connect', () => c.write(JSON.stringify({op: 'lend', pid: process.pid, argv, report}) + '\n'))
    c.on('data', (d: string) => {
      buf += d
      const nl = buf.indexOf('\n')
      if (nl < 0) return
      const r = JSON.parse(buf.slice(0, nl)) as {ok: boolean, held?: number[], open?: string[], mounted?: unknown[], message?: string, code?: string}
      if (!r.ok) {
        c.destroy()
        reject(Object.assign(new Error(r.message ?? 'the server refused'), {code: r.code}))
        return
      }
      // Kept open, without keeping this process alive: its end gives the image back.
      c.unref()
      resolve({held: r.held ?? [], open: r.open ?? [], mounted: Array.isArray(r.mounted) ? r.mounted : []})
    })
    c.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') resolve(null)
      else reject(e)
    })
  }).catch((e: Error & {code?: string}) => {
    fs.rmSync(report, {force: true})
    return die(`the server of ${path.basename(image)} could not lend it: ${e.message}`, e.code === 'EBUSY' ? 3 : 7)
  })
  if (held === null) {
    fs.closeSync(reportFd)
    fs.rmSync(report, {force: true})
    return
  }
  if (held.held.length) process.env.PRISM_HELD_ORPHANS = held.held.join(',')
  // What src/fs/volume.ts reads as it opens the image (this process only: one it starts borrows for itself).
  const fd = reportFd
  ;(globalThis as Record<symbol, unknown>)[Symbol.for('prism.lend')] = {
    report: (line: string): void => {
      fs.writeSync(fd, line)
    },
    open: new Set(held.open),
    mounted: held.mounted,
  }
}
