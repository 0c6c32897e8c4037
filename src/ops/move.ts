// mv: renames within a fileset; between filesets, copies (sharing blocks) then removes.
import {fail} from '../errors.js'
import type {Namespace} from '../fs/namespace.js'
import {splitPath} from '../fs/namespace.js'
import type {Volume} from '../fs/volume.js'
import {copy} from './copy.js'

export interface ImagePath {
  fileset: string
  path: string
}

export function move(vol: Volume, srcs: ImagePath[], dst: ImagePath, nsOf: (fileset: string) => Namespace): void {
  const dns = nsOf(dst.fileset)
  const dstIsDir = dns.exists(dst.path, true) && dns.resolve(dst.path, true).isDir
  if (srcs.length > 1 && !dstIsDir) fail('ENOTDIR', `target '${dst.fileset}:${dst.path}' is not a directory`)
  for (const src of srcs) {
    const comps = splitPath(src.path)
    if (comps.length === 0) fail('EBUSY', `cannot move the root of fileset '${src.fileset}'`)
    const target = dstIsDir ? {fileset: dst.fileset, path: (dst.path.endsWith('/') ? dst.path : dst.path + '/') + comps[comps.length - 1]} : dst
    if (src.fileset === target.fileset) {
      const ns = nsOf(src.fileset)
      // As GNU mv: a source and a target that are one file (the same name, as in
      // `mv root:/a root:/`, or two hard links) is an error, not a silent success.
      if (ns.exists(target.path, false) && ns.resolve(target.path, false).ino === ns.resolve(src.path, false).ino) {
        fail('EINVAL', `'${src.fileset}:${src.path}' and '${target.fileset}:${target.path}' are the same file`)
      }
      ns.rename(src.path, target.path)
      continue
    }
    nsOf(src.fileset).resolve(src.path, false) // fail early if missing
    copy(vol, [{kind: 'image', ...src}], {kind: 'image', ...target}, {recursive: true, noTargetDirectory: true})
    nsOf(src.fileset).remove(src.path, {recursive: true})
  }
}
