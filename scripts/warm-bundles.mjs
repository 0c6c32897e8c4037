// Makes the code caches of the start-up bundles (dist/fast.cjs.cache, dist/fast-fsck.cjs.cache,
// dist/cli.cjs.cache; bin/load-bundle.cjs reads them): runs each bundle's commands once on a
// small image made here, each bundle in a process of its own, and saves the bytecode V8
// compiled meanwhile. A cache only saves start-up time, so a failure here is reported and the
// build goes on without it.
import {spawnSync} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
const prism = (...args) => {
  const r = spawnSync(process.execPath, [path.join(root, 'bin/run.js'), ...args], {encoding: 'utf8'})
  if (r.status !== 0) throw new Error(`prism ${args.join(' ')}: exit ${r.status}: ${(r.stderr || '').trim()}`)
}
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-warm-'))
try {
  // The image: the sample tree, and a directory large enough to be hashed.
  const tree = path.join(work, 'tree')
  fs.cpSync(path.join(root, 'fixtures/sample-rootfs'), tree, {recursive: true})
  fs.mkdirSync(path.join(tree, 'many'))
  for (let i = 0; i < 300; i++) fs.writeFileSync(path.join(tree, 'many', `f${i}.txt`), `file ${i}\n`.repeat(i))
  fs.writeFileSync(path.join(work, 'sigs.ndb'), 'Prism.Warm.Test:0:*:707269736d2d7761726d\n')
  const img = path.join(work, 'warm.img')
  prism('mkfs', img, '--size', '64M')
  prism('cp', '-r', `${tree}/.`, 'root:/', '-i', img)
  for (const name of ['fast-fsck', 'fast', 'cli']) {
    const r = spawnSync(process.execPath, [path.join(root, 'scripts/warm-child.cjs'), name, img, work], {stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8'})
    if (r.status !== 0) throw new Error(`warming dist/${name}.cjs: exit ${r.status}: ${(r.stderr || '').trim()}`)
  }
  console.log('dist/fast.cjs.cache, dist/fast-fsck.cjs.cache, dist/cli.cjs.cache: code caches made')
} catch (e) {
  console.warn(`warning: the start-up bundles have no code cache (commands start a little slower): ${e.message}`)
} finally {
  fs.rmSync(work, {recursive: true, force: true})
}
