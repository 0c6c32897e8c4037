#!/usr/bin/env node
// The `prism` binary: hands argv to oclif, which reads oclif.manifest.json so that --help
// and --version load no command code. A plain `prism cat` takes a fast path that skips
// oclif's start-up (src/cli/cat.ts); anything else about it (--help, other flags) goes
// through oclif as usual.
const argv = process.argv.slice(2)
if (argv[0] === 'cat') {
  const {fastCat} = await import('../dist/cli/cat.js')
  const code = fastCat(argv.slice(1))
  if (code !== null) process.exit(code)
}
const {execute} = await import('@oclif/core')
await execute({dir: import.meta.url})
