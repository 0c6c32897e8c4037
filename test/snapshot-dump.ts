// Every fileset of a volume and everything in it (test/helpers.ts snapshot: each file's
// type, mode, size, links, owner, attributes and content hash), for comparing states.
import '../src/fs/namespace.js'
import {listFilesets} from '../src/fs/filesets.js'
import {Namespace} from '../src/fs/namespace.js'
import type {Volume} from '../src/fs/volume.js'
import {snapshot} from './helpers.js'

export function dumpAll(vol: Volume): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {}
  for (const f of listFilesets(vol)) out[f.name] = snapshot(new Namespace(vol, f))
  return out
}
