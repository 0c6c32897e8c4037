#!/usr/bin/env node
// The `prism` binary: hands argv to oclif, which reads oclif.manifest.json so that --help
// and --version load no command code. A plain `prism cat`, `prism fsck`, `prism fileset list`
// and the common forms of `prism clone`, `prism scan` and `prism export` take fast paths that
// skip oclif's start-up (src/cli/cat.ts, src/cli/fastclone.ts, src/cli/scan.ts,
// src/cli/fsck.ts, src/cli/export.ts, src/cli/filesetlist.ts); anything else about them
// (--help, other flags) goes through oclif as usual (src/cli/oclif.ts): from one bundle of it
// and every command (dist/cli.cjs), or for help and the version from its own modules.
// CommonJS (bin/package.json): node starts a CommonJS entry about 4 ms sooner than a module,
// and the fast paths are CommonJS bundles; oclif (ES modules) is imported when needed.
'use strict'
const path = require('node:path')
const {pathToFileURL} = require('node:url')

/** the arguments as given */
const given = process.argv.slice(2)
/**
 * The image flag given before the command (`prism -i IMG fsck`, as `git -C DIR status`) goes
 * after it, where each command reads its flags (before a `--`, which ends them): `order[j]`
 * is the index in `given` of `argv[j]`.
 */
const order = given.map((_, i) => i)
{
  let k = 0
  while (k < given.length && (/^--image=./.test(given[k]) || ((given[k] === '-i' || given[k] === '--image') && k + 1 < given.length))) k += given[k].includes('=') ? 1 : 2
  if (k > 0 && k < given.length) {
    const rest = order.slice(k)
    const end = rest.findIndex((i) => given[i] === '--')
    const at = end < 0 ? rest.length : end
    order.splice(0, order.length, ...rest.slice(0, at), ...order.slice(0, k), ...rest.slice(at))
  }
}
const argv = order.map((i) => given[i])
// A reader that goes away (`prism fsck | head -1`) is not a failure of the command: its exit
// status still says what happened to the image. Writes after that are dropped.
// Output that cannot be written for another reason (a full device, a closed descriptor) is
// one line on stderr and exit status 1 at least (the command's own work is done or not, as
// it says), never a stack trace.
/** the first failed write of standard output (a full device, say), said when the command ends */
let outputFailed = null
const OUTPUT_ERRORS = ['ENOSPC', 'EBADF', 'EIO', 'EDQUOT', 'EFBIG', 'EPIPE', 'ERR_STREAM_DESTROYED']
/** A write to standard output that failed (the image's own writes fail as PrismErrors). */
const outputError = (e) => e !== null && typeof e === 'object' && (e.syscall === 'write' || e.code === 'ERR_STREAM_DESTROYED') && OUTPUT_ERRORS.includes(e.code)
process.stdout.on('error', (e) => {
  if (e.code !== 'EPIPE' && e.code !== 'ERR_STREAM_DESTROYED') outputFailed ??= e
})
// A command that failed has said why (its own line, about the output too); one that would
// end well despite lost output says so, with status 1 (fsck: 8, e2fsck's operational error;
// scan: 2, clamscan's error, also when it found something: the names it found are lost).
process.on('exit', (code) => {
  if (!outputFailed || (code && !(argv[0] === 'scan' && code === 1))) return
  try {
    // (said to be all that went wrong: a clone or a mkfs is made, a script must not make it again)
    require('node:fs').writeSync(2, `prism: cannot write standard output: ${String(outputFailed.message).replace(/^[A-Z]+: /, '').replace(/, write$/, '')}; the command did its work, only its output is lost\n`)
  } catch {
    // (stderr gone too: the exit status says it)
  }
  process.exitCode = argv[0] === 'fsck' ? 8 : argv[0] === 'scan' ? 2 : 1
})
/**
 * Ends the process with `code` once a failed write of the output has been seen: a write to a
 * device such as /dev/full fails after the call that made it, on the next tick (a clone
 * whose name could not be printed exited 0 when process.exit came first).
 */
function exitSoon(code) {
  process.exitCode = code
  setImmediate(() => process.exit())
}
/** An error nothing caught: a failed write of the output (see above), else an internal error (70). */
function uncaught(e) {
  if (outputError(e)) {
    if (e.code !== 'EPIPE') outputFailed ??= e
    process.exit(process.exitCode || 0)
  }
  try {
    require('node:fs').writeSync(2, `prism: internal error: ${e instanceof Error ? e.message : String(e)}\n${process.env.PRISM_DEBUG && e instanceof Error ? `${e.stack}\n` : ''}`)
  } catch {
    // (stderr gone too)
  }
  process.exit(70)
}
process.on('uncaughtException', uncaught)
const imageArg = () => {
  const i = argv.findIndex((a) => a === '-i' || a === '--image')
  return i >= 0 ? argv[i + 1] : argv.find((a) => a.startsWith('--image='))?.slice(8)
}
const listing = argv[0] === 'fileset' && argv[1] === 'list'
const background = argv[0] === 'expand' && argv.includes('--background')
// A command that may take a fast path loads its bundle first (dist/fast.cjs, or for fsck the
// smaller dist/fast-fsck.cjs), with V8's code cache (bin/load-bundle.cjs); the bundle holds
// the check for a server below too, so the command loads one file.
const bundle = argv[0] === 'fsck' ? 'fast-fsck'
  : ['cat', 'clone', 'scan', 'export'].includes(argv[0]) || listing || background ? 'fast' : null
const fast = bundle ? require('./load-bundle.cjs').loadBundle(bundle).exports : null
// An image held by a prism server (mounted): the server lends it to this command
// (src/cli/served.ts); nothing is read when no server runs for the image.
// `prism clone` (a new fileset) and `prism expand` are asked of the server instead, through
// oclif (not the fast path, which would open the image).
/**
 * Arguments holding bytes that are not UTF-8 (a Latin-1 file name): Node decodes each such
 * byte as U+FFFD, so a name `ls` shows could not be named back, and `touch` made another one.
 * The arguments' own bytes, from /proc/self/cmdline, are taken instead, each stray byte as
 * src/format/name.ts writes it (a lone surrogate, which nameBytes turns back into the byte).
 */
async function rawArguments() {
  if (!argv.some((a) => a.includes('\ufffd'))) return
  let raw
  try {
    raw = require('node:fs').readFileSync('/proc/self/cmdline')
  } catch {
    return // (no /proc: as Node decoded them)
  }
  const parts = []
  for (let i = 0, from = 0; i < raw.length; i++) if (raw[i] === 0) { parts.push(raw.subarray(from, i)); from = i + 1 }
  if (parts.length < given.length) return
  const tail = parts.slice(parts.length - given.length)
  // (only where the command line is what Node saw, argument for argument)
  if (tail.some((b, i) => b.toString('utf8') !== given[i])) return
  const {nameText} = await import('../dist/format/name.js')
  for (let j = 0; j < argv.length; j++) if (argv[j].includes('\ufffd')) argv[j] = nameText(tail[order[j]])
}

async function main() {
  await rawArguments()
  let served
  if (argv[0] !== undefined && !argv[0].startsWith('-') && !['mount', 'umount', 'serve', 'mkfs', 'help'].includes(argv[0])) {
    const {borrowIfServed} = fast ?? await import('../dist/cli/served.js')
    served = await borrowIfServed(argv)
  }
  if (background) {
    // The background expander, started by prism itself: no oclif, no output.
    try {
      fast.runBackground(fast.findImage(imageArg()))
      process.exit(0)
    } catch {
      process.exit(1) // nobody listens; the next command starts a new expander
    }
  }
  if (argv[0] === 'cat' || (argv[0] === 'clone' && served !== 'server')) {
    const code = argv[0] === 'cat' ? fast.fastCat(argv.slice(1)) : fast.fastClone(argv.slice(1))
    if (code === -1) {
      // An async clone was made: start its background expander, then leave.
      fast.ensureExpander(fast.findImage(imageArg()))
      return exitSoon(0)
    }
    if (code !== null) return exitSoon(code)
  }
  let done = false
  if (argv[0] === 'scan' || argv[0] === 'fsck' || argv[0] === 'export' || listing) {
    const code = await (listing ? fast.fastFilesetList(argv.slice(2))
      : argv[0] === 'scan' ? fast.fastScan(argv.slice(1))
      : argv[0] === 'fsck' ? fast.fastFsck(argv.slice(1))
      : fast.fastExport(argv.slice(1)))
    if (code !== null) {
      // Not process.exit(): a large report on a pipe must drain first.
      process.exitCode = code
      done = true
    }
  }
  if (!done) {
    // Every other command runs from one bundle with oclif in it (dist/cli.cjs); what it leaves
    // (help, the version, an unknown command) goes to oclif loaded from its own modules.
    const root = pathToFileURL(path.join(__dirname, '..')).href + '/'
    // (help and the version never load the bundle; runBundled declines them too, and `-h`
    // where it means help, which only the manifest tells)
    const help = argv.length === 0 || argv[0] === 'help' || argv.includes('--help') || argv.includes('--version')
    const cli = help ? null : require('./load-bundle.cjs').loadBundle('cli').exports
    if (!cli || !(await cli.runBundled(argv, root, cli.COMMANDS))) {
      const {runOclif} = await import('../dist/cli/oclif.js')
      await runOclif(argv, root)
    }
  }
}

main().catch(uncaught)
