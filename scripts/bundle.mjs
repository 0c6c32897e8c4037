// Bundles the start-up fast paths (src/cli/fast.ts, compiled in dist/) into dist/fast.cjs:
// one file loads about twice as fast as the fifty modules it contains. fs-ext (a native
// addon), and picomatch, ora and tar (loaded on first use) stay outside. `prism fsck` has a
// bundle of its own, dist/fast-fsck.cjs (src/cli/fastfsck.ts and what it needs): it is
// judged against e2fsck's start-up, and half the code parses in 10 ms less. Every other command
// runs from dist/cli.cjs: oclif and all the commands (src/cli/oclif.ts runBundled).
// The bundles are CommonJS so that bin/load-bundle.cjs can run them with V8's code cache
// (scripts/warm-bundles.mjs makes it); `import.meta.url` in them is the bundle's own URL.
import {build} from 'esbuild'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
const dist = path.join(root, 'dist')
// served.ts reads standard input for `prism write` and `prism import -` (commands oclif runs),
// importing the tar and spool modules to do it: no fast path reaches that, so those modules
// stay outside the bundles, imported from dist/ if ever needed (a path relative to the bundle).
const stdinReadersOutside = {
  name: 'stdin-readers-outside',
  setup(b) {
    b.onResolve({filter: /^\.\.?\//}, (args) => {
      if (args.kind !== 'dynamic-import' || !args.importer.endsWith(`${path.sep}cli${path.sep}served.js`)) return undefined
      return {path: `./${path.relative(dist, path.resolve(args.resolveDir, args.path)).split(path.sep).join('/')}`, external: true}
    })
  },
}
const options = {
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  // typescript: oclif reads a tsconfig with it only for a plugin linked in development
  external: ['fs-ext', 'picomatch', 'ora', 'tar', 'typescript'],
  define: {'import.meta.url': '__bundleUrl'},
  banner: {js: '"use strict";'},
  plugins: [stdinReadersOutside],
  logLevel: 'warning',
}
// dist/cli.cjs: every command oclif runs, with oclif itself (src/cli/oclif.ts runBundled). Its
// entry is written here from the commands compiled in dist/commands: COMMANDS maps each id
// (`fileset:list`) to its class, as oclif's "explicit" command discovery expects.
const commandFiles = fs.readdirSync(path.join(dist, 'commands'), {recursive: true})
  .filter((f) => f.endsWith('.js')).map((f) => f.split(path.sep).join('/')).sort()
const cliEntry = [
  "export {runBundled} from './cli/oclif.js'",
  ...commandFiles.map((f, i) => `import C${i} from './commands/${f}'`),
  `export const COMMANDS = {${commandFiles.map((f, i) => `${JSON.stringify(f.slice(0, -3).replace(/\//g, ':'))}: C${i}`).join(', ')}}`,
].join('\n')
const bundles = [
  [{entryPoints: [path.join(dist, 'cli/fast.js')]}, 'dist/fast.cjs'],
  [{entryPoints: [path.join(dist, 'cli/fastfsck.js')]}, 'dist/fast-fsck.cjs'],
  [{stdin: {contents: cliEntry, resolveDir: dist, sourcefile: 'dist/cli-entry.js'}}, 'dist/cli.cjs'],
]
for (const [entry, out] of bundles) {
  fs.rmSync(path.join(root, `${out}.cache`), {force: true}) // made again from this build by scripts/warm-bundles.mjs
  await build({...options, ...entry, outfile: path.join(root, out)})
  // A script compiled from a code cache cannot import() (node loses its loader on the way), so
  // each import("...") calls __import, which bin/load-bundle.cjs passes in. In dist/cli.cjs,
  // oclif's module loader also imports what it is given (a plugin's hook or command, by file
  // URL, which the bundle path never asks it for): those calls go to __import too. Any other
  // import( is refused here rather than left to fail at run time.
  const file = path.join(root, out)
  let code = fs.readFileSync(file, 'utf8').replace(/\bimport\(("[^"\\]+")\)/g, '__import($1)')
  if (out === 'dist/cli.cjs') code = code.replace(/\bawait import\((?!\))/g, 'await __import(')
  const left = code.match(/.{0,40}\bimport\((?!\)).{0,40}/)
  if (left) throw new Error(`${out}: an import() that is not of a string literal: ${left[0]}`)
  // The build id: bin/load-bundle.cjs uses a code cache only with the bundle it was made from.
  fs.writeFileSync(file, `${code}\n//# prismBuild=${crypto.randomBytes(8).toString('hex')}\n`)
}
console.log('dist/fast.cjs, dist/fast-fsck.cjs, dist/cli.cjs: start-up bundles made')
