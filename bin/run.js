#!/usr/bin/env node
// The `prism` binary: hands argv to oclif, which reads oclif.manifest.json so that --help
// and --version load no command code. A plain `prism cat`, `prism fsck`, `prism fileset list`
// and the common forms of `prism clone`, `prism scan` and `prism export` take fast paths that
// skip oclif's start-up (src/cli/cat.ts, src/cli/fastclone.ts, src/cli/scan.ts,
// src/cli/fsck.ts, src/cli/export.ts, src/cli/filesetlist.ts); anything else about them
// (--help, other flags) goes through oclif as usual (src/cli/oclif.ts).
// CommonJS (bin/package.json): node starts a CommonJS entry about 4 ms sooner than a module,
// and the fast paths are CommonJS bundles; oclif (ES modules) is imported when needed.
'use strict'
const path = require('node:path')
const {pathToFileURL} = require('node:url')

const argv = process.argv.slice(2)
// A reader that goes away (`prism fsck | head -1`) is not a failure of the command: its exit
// status still says what happened to the image. Writes after that are dropped.
process.stdout.on('error', (e) => { if (e.code !== 'EPIPE' && e.code !== 'ERR_STREAM_DESTROYED') throw e })
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
async function main() {
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
      process.exit(0)
    }
    if (code !== null) process.exit(code)
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
    const {runOclif} = await import('../dist/cli/oclif.js')
    await runOclif(argv, pathToFileURL(path.join(__dirname, '..')).href + '/')
  }
}

main()
