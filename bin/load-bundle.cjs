'use strict'
// Loads a start-up bundle (dist/fast.cjs or dist/fast-fsck.cjs, made by scripts/bundle.mjs)
// with V8's code cache: dist/NAME.cjs.cache holds the bytecode of every function a run of the
// bundle compiled (scripts/warm-bundles.mjs makes it at build time), so a command's start
// neither parses the bundle nor compiles the functions it calls (about 30 ms of `prism fsck`'s
// 0.35 s on /usr: bench/README.md, "fsck's start-up").
//
// The cache is used only for the very bundle it was made from: its header records the
// bundle's size and the build id scripts/bundle.mjs wrote at its end (copies of the install,
// whatever their file times, keep both), and V8 itself refuses a cache made by another version
// of V8 or under other flags (`node --cpu-prof ...`). Without a cache, or with one refused,
// the bundle is compiled as usual: a cache only ever saves time.
const fs = require('node:fs')
const path = require('node:path')
const vm = require('node:vm')
const {createRequire} = require('node:module')
const {pathToFileURL} = require('node:url')

const MAGIC = 0x32435250 // 'PRC2'
const ID_MARK = '\n//# prismBuild='
const ID_LEN = 16
const HEADER = 8 + ID_LEN // magic u32, the source's length u32, the build id (16 ASCII bytes)

/** What a cache made from `source` must start with. */
function headerOf(source) {
  const header = Buffer.alloc(HEADER)
  header.writeUInt32LE(MAGIC, 0)
  header.writeUInt32LE(source.length >>> 0, 4)
  const at = source.lastIndexOf(ID_MARK)
  if (at >= 0) header.write(source.slice(at + ID_MARK.length, at + ID_MARK.length + ID_LEN), 8, ID_LEN, 'latin1')
  return header
}

/** The bundles this process has run, by name, in order (a test tells the start-up paths apart by it). */
const loaded = []

/**
 * Runs dist/NAME.cjs and returns its exports, and the compiled script (for
 * scripts/warm-bundles.mjs, which asks it for a cache after a run). `useCache` false: compile
 * from source whatever cache there is.
 */
function loadBundle(name, useCache = true) {
  const file = path.join(__dirname, '..', 'dist', `${name}.cjs`)
  const source = fs.readFileSync(file, 'utf8')
  const header = headerOf(source)
  let cachedData
  if (useCache) {
    try {
      const c = fs.readFileSync(`${file}.cache`)
      if (c.length > HEADER && c.subarray(0, HEADER).equals(header)) cachedData = c.subarray(HEADER)
    } catch {
      // no cache: compiled from source
    }
  }
  // The wrapper keeps the bundle's first line where it is: stack traces name the bundle's lines.
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname, __bundleUrl, __import) {${source}\n})`, {filename: file, cachedData})
  const module = {exports: {}}
  const dir = path.dirname(file)
  // The bundle's import() calls (ora, node built-ins: scripts/bundle.mjs renames them), made
  // here: a script compiled from a code cache cannot import() itself. A relative path is the
  // bundle's, in dist/.
  const importer = (spec) => import(spec.startsWith('./') || spec.startsWith('../') ? pathToFileURL(path.join(dir, spec)).href : spec)
  script.runInThisContext()(module.exports, createRequire(file), module, file, dir, pathToFileURL(file).href, importer)
  loaded.push(name)
  return {exports: module.exports, script, header, cacheUsed: cachedData !== undefined && !script.cachedDataRejected}
}

module.exports = {loadBundle, loaded}
