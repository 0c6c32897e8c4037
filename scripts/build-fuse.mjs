// Builds the optional FUSE addon (native/fuse, node-gyp) at `npm ci` (postinstall) and at
// `npm run build`. Where libfuse3's development files are missing (`pkg-config fuse3` fails)
// or the build fails, it writes the reason to native/fuse/build/unavailable.txt, says so in
// one line, and exits 0: Prism installs, builds and tests without FUSE, and
// src/fuse/libfuse.ts reports the reason. It never touches anything outside native/fuse/build.
// --if-stale: do nothing when the addon is newer than its sources (the `npm run build` case).
import {spawnSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {fresh, mtime, nodeGyp} from './gyp.mjs'

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
const dir = path.join(root, 'native', 'fuse')
const out = path.join(dir, 'build', 'Release', 'prism_fuse.node')
const note = path.join(dir, 'build', 'unavailable.txt')
const sources = ['prism_fuse.c', 'binding.gyp'].map((f) => path.join(dir, f))

function unavailable(reason) {
  fs.mkdirSync(path.dirname(note), {recursive: true})
  fs.rmSync(out, {force: true})
  fs.writeFileSync(note, reason + '\n')
  console.log(`prism: the FUSE binding is not built: ${reason}`)
  process.exit(0)
}

if (process.argv.includes('--if-stale')) {
  const built = mtime(out)
  const staleNote = mtime(note)
  if (fresh(out, sources)) process.exit(0)
  // not buildable here last time, and nothing changed since: do not retry on every build
  if (built < 0 && staleNote > 0 && sources.every((s) => mtime(s) < staleNote) && process.env.PRISM_FUSE_REBUILD === undefined) process.exit(0)
}

const pc = spawnSync('pkg-config', ['--exists', '--print-errors', 'fuse3'], {encoding: 'utf8'})
if (pc.error) unavailable('pkg-config is not installed (apt-get install pkg-config libfuse3-dev)')
if (pc.status !== 0) unavailable('libfuse3 development files not found by pkg-config fuse3 (apt-get install libfuse3-dev)')

const [cmd, args] = nodeGyp(['rebuild'])
const r = spawnSync(cmd, args, {cwd: dir, encoding: 'utf8'})
if (r.error || r.status !== 0) {
  const lines = `${r.stdout ?? ''}\n${r.stderr ?? ''}`.split('\n').filter((l) => /error/i.test(l) && !/gyp info/.test(l))
  unavailable(`node-gyp failed${r.error ? `: ${r.error.message}` : ''}${lines.length ? `: ${lines.slice(0, 3).join(' | ').trim()}` : ''}`)
}
fs.rmSync(note, {force: true})
console.log('native/fuse: FUSE binding built')
