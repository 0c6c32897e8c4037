// The text `prism fsck` prints for a result (src/commands/fsck.ts), one line per note, one per
// problem, then the summary; never a raw control character or a byte that is not UTF-8. Kept apart from the command so that the fixture tests can check
// the library's result against the same expected output as the CLI's.
import type {FsckResult} from './index.js'
import {nameShown} from '../format/name.js'

export function fsckReportLines(result: FsckResult, repair: boolean): string[] {
  const out = [...result.notes]
  for (const p of result.problems) out.push(`${p.code} ${p.where}: ${p.message}${p.fixed ? ' [fixed]' : p.fixable ? '' : ' [cannot fix]'}`)
  const s = result.stats
  const state = result.exitCode === 0 ? 'clean' : result.exitCode === 1 ? 'errors fixed' : 'ERRORS LEFT'
  const extra = (s.specials ? `, ${s.specials} special files` : '') + (s.xattrSets ? `, ${s.xattrSets} attribute sets` : '')
  out.push(`${state}: ${s.filesets} filesets, ${s.files} files, ${s.dirs} directories, ${s.symlinks} symlinks${extra}; ${s.blocksUsed} blocks used, ${s.blocksFree} free; ${s.inodesFree} inodes free`)
  if (result.exitCode === 4 && !repair) out.push("run 'prism fsck --repair' to fix")
  // Text is one line each: a name's odd bytes and control characters show as \xNN (the
  // result itself, and so --json, carries the names as they are).
  return out.map(nameShown)
}
