'use strict'
// scripts/warm-bundles.mjs's child: `node scripts/warm-child.cjs NAME IMAGE WORKDIR` runs
// the commands of dist/NAME.cjs on IMAGE (compiled from source, any old cache ignored), then
// writes what V8 compiled as dist/NAME.cjs.cache (written to a temporary name, then renamed).
const fs = require('node:fs')
const path = require('node:path')
const {loadBundle} = require('../bin/load-bundle.cjs')

async function main() {
  const [name, img, work] = process.argv.slice(2)
  const {exports: fast, script, header} = loadBundle(name, false)
  const run = async (what, code) => {
    const c = await code
    if (c !== 0) throw new Error(`${what}: exit ${c}`)
  }
  if (name !== 'cli') await run('fsck', fast.fastFsck(['-i', img]))
  if (name === 'fast') {
    await run('fileset list', fast.fastFilesetList(['-i', img]))
    await run('cat', fast.fastCat(['root:/etc/hostname', 'root:/many/f200.txt', '-i', img]))
    await run('scan', fast.fastScan(['root', '-s', path.join(work, 'sigs.ndb'), '-i', img]))
    await run('export', fast.fastExport(['root:/', path.join(work, 'out.tar'), '-i', img]))
    await run('clone', fast.fastClone(['root', 'warm', '--mode', 'sync', '-i', img]))
    await run('fsck', fast.fastFsck(['-i', img]))
  }
  if (name === 'cli') {
    // A few of the commands oclif runs, each as bin/run.js would (status as runBundled sets it).
    const root = require('node:url').pathToFileURL(path.join(__dirname, '..')).href + '/'
    const one = async (args) => {
      process.exitCode = 0
      if (!(await fast.runBundled([...args, '-i', img], root, fast.COMMANDS))) throw new Error(`${args.join(' ')}: not run from the bundle`)
      await run(args.join(' '), process.exitCode)
    }
    await one(['ls', '-l', 'root:/etc'])
    await one(['stat', 'root:/etc/hostname'])
    await one(['mkdir', '-p', 'root:/warm/a'])
    await one(['cp', '-r', path.join(work, 'tree', 'etc'), 'root:/warm/a'])
    await one(['chmod', '-R', '700', 'root:/warm'])
    await one(['du', '-s', 'root:/'])
    await one(['df'])
    await one(['rm', '-r', 'root:/warm'])
  }
  const file = path.join(__dirname, '..', 'dist', `${name}.cjs.cache`)
  fs.writeFileSync(`${file}.tmp`, Buffer.concat([header, script.createCachedData()]))
  fs.renameSync(`${file}.tmp`, file)
}

main().then(() => process.exit(0), (e) => {
  process.stderr.write(`${e.stack || e}\n`)
  process.exit(1)
})
