// A second descriptor of a file already open, which is sure to be that file.
import fs from 'node:fs'

/**
 * Opens the file open as `fd` once more, with `flags` (a descriptor of its own: an offset, a
 * read-ahead, O_DIRECT), or null when it cannot. Through /proc/self/fd, which leads to that
 * very file even after its path was renamed, removed, or given to another file; by `path` where
 * /proc is not mounted, and then only if it is still the same file. Never by the path alone:
 * a server holds its image for hours, and reading or writing whatever file now has its name
 * would serve another image's blocks.
 */
export function reopen(fd: number, path: string, flags: number): number | null {
  for (const p of reopenPaths(fd, path)) {
    let other: number
    try {
      other = fs.openSync(p, flags)
    } catch {
      continue
    }
    try {
      const a = fs.fstatSync(other), b = fs.fstatSync(fd)
      if (a.dev === b.dev && a.ino === b.ino) return other
    } catch {
      // fall through
    }
    fs.closeSync(other)
  }
  return null
}

/** Where reopen() looks for the file open as `fd`, in order (a thread of this process may look there too). */
export function reopenPaths(fd: number, path: string): string[] {
  return [`/proc/self/fd/${fd}`, path]
}
