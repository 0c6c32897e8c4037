// Node built-ins that only some commands need, loaded on first use: imported at the top of
// a module they would cost every command's start a few milliseconds (all the fast paths
// share the bundles dist/fast.cjs and dist/fast-fsck.cjs).
import {createRequire} from 'node:module'

const require = createRequire(import.meta.url)

/** node:crypto (hashing for scan, random ids for mkfs) */
export function crypto(): typeof import('node:crypto') {
  return require('node:crypto') as typeof import('node:crypto')
}

/** node:child_process (the background expander) */
export function childProcess(): typeof import('node:child_process') {
  return require('node:child_process') as typeof import('node:child_process')
}
