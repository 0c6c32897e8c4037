// Rebuilds prism's own addon (native/sys.c) at `npm run build` when its sources are newer
// than the built module (`npm ci` builds it through the package's install script). Unlike the
// FUSE addon it is not optional: a failure fails the build.
import {spawnSync} from 'node:child_process'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {fresh, nodeGyp} from './gyp.mjs'

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
const dir = path.join(root, 'native')
const out = path.join(dir, 'build', 'Release', 'prism_sys.node')
if (fresh(out, ['sys.c', 'binding.gyp'].map((f) => path.join(dir, f)))) process.exit(0)
const [cmd, args] = nodeGyp(['rebuild'])
const r = spawnSync(cmd, args, {cwd: dir, stdio: 'inherit'})
if (r.error || r.status !== 0) {
  console.error(`prism: building native/ failed${r.error ? `: ${r.error.message}` : ''}`)
  process.exit(1)
}
console.log('native: prism_sys rebuilt')
