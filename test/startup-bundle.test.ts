// The start-up bundles (dist/fast.cjs, dist/fast-fsck.cjs) and their code caches
// (bin/load-bundle.cjs, scripts/warm-bundles.mjs): the build makes a cache each command uses,
// a cache is used only with the very bundle it was made from (copies of the install included),
// and a bundle run from its cache can still import() (ora, node built-ins).
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {tmpDir} from './helpers.js'

const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)))

/** Loads bundle `name` of the install at `root` in a child process; what it reports. */
function load(root: string, name: string): {cacheUsed: boolean, exports: string[]} {
  const probe = `const b = require(${JSON.stringify(path.join(root, 'bin/load-bundle.cjs'))}).loadBundle(${JSON.stringify(name)}); console.log(JSON.stringify({cacheUsed: b.cacheUsed, exports: Object.keys(b.exports).sort()}))`
  const r = spawnSync(process.execPath, ['-e', probe], {encoding: 'utf8'})
  expect(r.status, r.stderr).to.equal(0)
  return JSON.parse(r.stdout) as {cacheUsed: boolean, exports: string[]}
}

describe('start-up bundles and their code caches', function () {
  this.timeout(60000)
  let dir = ''
  afterEach(() => { if (dir) fs.rmSync(dir, {recursive: true, force: true}) })

  it('the build leaves a cache that each bundle uses, and every fast path in the bundles', () => {
    expect(load(ROOT, 'fast')).to.deep.equal({cacheUsed: true, exports: ['borrowIfServed', 'ensureExpander', 'fastCat', 'fastClone', 'fastExport', 'fastFilesetList', 'fastFsck', 'fastScan', 'findImage', 'runBackground']})
    expect(load(ROOT, 'fast-fsck')).to.deep.equal({cacheUsed: true, exports: ['borrowIfServed', 'fastFsck']})
  })

  it('a copy of the install uses the cache whatever its file times; a bundle of another build does not, and runs all the same', () => {
    dir = tmpDir()
    for (const f of ['bin', 'dist', 'native', 'package.json']) fs.cpSync(path.join(ROOT, f), path.join(dir, f), {recursive: true})
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir')
    const bundle = path.join(dir, 'dist', 'fast-fsck.cjs')
    const when = new Date(Date.now() + 3_600_000)
    fs.utimesSync(bundle, when, when)
    expect(load(dir, 'fast-fsck').cacheUsed, 'a copy, another modification time').to.equal(true)
    // Another build: the same bundle but for its id (the same length, as V8's own check sees it).
    const src = fs.readFileSync(bundle, 'utf8')
    const at = src.lastIndexOf('//# prismBuild=') + '//# prismBuild='.length
    const other = src.slice(0, at) + src.slice(at, at + 16).split('').reverse().join('') + src.slice(at + 16)
    expect(other.length).to.equal(src.length)
    expect(other).to.not.equal(src)
    fs.writeFileSync(bundle, other)
    expect(load(dir, 'fast-fsck')).to.deep.equal({cacheUsed: false, exports: ['borrowIfServed', 'fastFsck']})
    // And the command itself, from that copy.
    const img = path.join(dir, 'x.img')
    const mk = spawnSync(process.execPath, [path.join(dir, 'bin/run.js'), 'mkfs', img, '--size', '64M'], {encoding: 'utf8'})
    expect(mk.status, mk.stderr).to.equal(0)
    const fsck = spawnSync(process.execPath, [path.join(dir, 'bin/run.js'), 'fsck', '-i', img], {encoding: 'utf8'})
    expect([fsck.status, fsck.stderr]).to.deep.equal([0, ''])
    expect(fsck.stdout).to.match(/^clean: 1 filesets/)
  })

  it('every import() in a bundle goes through the loader: none is left for V8 to refuse', () => {
    for (const name of ['fast', 'fast-fsck']) {
      const src = fs.readFileSync(path.join(ROOT, 'dist', `${name}.cjs`), 'utf8')
      expect(src.match(/\bimport\(/g), name).to.equal(null)
      expect(src.match(/\b__import\("[^"]+"\)/g)?.length ?? 0, name).to.be.greaterThan(0)
    }
    // scan --exec starts its command through __import('node:child_process'), from the cache.
    dir = tmpDir()
    const img = path.join(dir, 'x.img')
    const run = (...args: string[]) => spawnSync(process.execPath, [path.join(ROOT, 'bin/run.js'), ...args], {encoding: 'utf8', input: 'some data\n'})
    expect(run('mkfs', img, '--size', '64M').status).to.equal(0)
    expect(run('write', 'root:/f', '-i', img).status).to.equal(0)
    const scan = run('scan', 'root', '--exec', 'true', '-i', img)
    expect([scan.status, scan.stderr]).to.deep.equal([0, ''])
    expect(scan.stdout).to.match(/scanned 1 fileset\(s\): 1 names, 1 distinct files/)
  })
})
