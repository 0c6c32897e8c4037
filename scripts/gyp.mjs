// Shared by the addon build scripts (build-sys.mjs, build-fuse.mjs): how to run node-gyp
// offline, and whether an addon is older than its sources.
import fs from 'node:fs'
import path from 'node:path'

export function mtime(p) {
  try {
    return fs.statSync(p).mtimeMs
  } catch {
    return -1
  }
}

/** True when `out` exists and is newer than every one of `sources`. */
export function fresh(out, sources) {
  const built = mtime(out)
  return built > 0 && sources.every((s) => mtime(s) < built)
}

/**
 * node-gyp's command line: the one npm runs scripts with, else the one bundled with npm, else
 * PATH; with Node's own headers when they sit beside the binary (no download: works offline).
 */
export function nodeGyp(args) {
  const npmGyp = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')
  const gyp = process.env.npm_config_node_gyp && fs.existsSync(process.env.npm_config_node_gyp)
    ? [process.execPath, process.env.npm_config_node_gyp]
    : fs.existsSync(npmGyp) ? [process.execPath, npmGyp] : ['node-gyp']
  const all = [...gyp.slice(1), ...args]
  const prefix = path.dirname(path.dirname(process.execPath))
  if (!process.env.npm_config_nodedir && fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) all.push(`--nodedir=${prefix}`)
  return [gyp[0], all]
}
