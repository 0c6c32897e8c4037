// mv: renames within a fileset; between filesets, copies (sharing blocks) then removes, with
// rename(2)'s rules either way (GNU mv's, across file systems): a directory replaces only an
// empty directory, a non-directory only a non-directory. Between filesets the copy is staged
// and published in the same transaction as the source's removal (src/ops/copy.ts), so the
// tree shows in one place or the other, never in both or neither.
import {fail} from '../errors.js'
import {dirCount} from '../fs/dir.js'
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
      nsOf(src.fileset).rename(src.path, target.path)
      continue
    }
    const sns = nsOf(src.fileset)
    const tns = nsOf(target.fileset)
    const moving = sns.resolve(src.path, false) // fail early if missing
    const from = sns.where(src.path)
    const to = tns.where(target.path)
    const p = tns.resolveParent(target.path)
    if (tns.lookupEntry(p.dir, p.name)) {
      const t = tns.resolve(target.path, false)
      if (moving.isDir && !t.isDir) fail('ENOTDIR', `cannot overwrite non-directory '${to}' with directory '${from}'`)
      if (!moving.isDir && t.isDir) fail('EISDIR', `cannot overwrite directory '${to}' with non-directory '${from}'`)
      if (t.isDir && dirCount(t) > 0) fail('ENOTEMPTY', `cannot move '${from}' to '${to}': directory not empty`)
    }
    copy(vol, [{kind: 'image', ...src}], {kind: 'image', ...target}, {
      recursive: true, noTargetDirectory: true, replaceEmptyDir: true,
      onPublish: (stats) => {
        // Nothing is removed unless all of it was copied.
        const e = stats.errors[0]
        if (e) fail(e.code, e.message)
        sns.remove(src.path, {recursive: true})
      },
    })
  }
}
