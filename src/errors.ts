// PrismError: every failure a user can cause or meet, with a stable code and the exit
// status the CLI returns for it (README "Exit codes"). Layers above src/format throw these.

export const EXIT = {
  OK: 0,
  FAIL: 1, // the operation could not be done: missing path, exists, not a directory ...
  USAGE: 2, // bad flags or arguments
  LOCKED: 3, // another process holds the image lock
  BADIMAGE: 5, // not a Prism image, newer format, damaged beyond what can be read
  NOSPACE: 6, // image full of blocks or of inodes
  IO: 7, // the image file cannot be read or written (read-only file, I/O error)
} as const

export type ErrCode =
  | 'ENOENT' | 'EEXIST' | 'ENOTDIR' | 'EISDIR' | 'ENOTEMPTY' | 'ENAMETOOLONG' | 'EINVAL' | 'ELOOP' | 'EXDEV'
  | 'EBUSY' | 'ENOSPC' | 'EFBIG' | 'EROFS' | 'ELOCKED' | 'EBADIMAGE' | 'EIO' | 'EUSAGE' | 'ENOIMAGE'
  | 'ENEEDWRITE' | 'ENODATA' | 'ENOTSUP' | 'E2BIG' | 'EACCES' | 'EPERM'

const EXIT_OF: Record<ErrCode, number> = {
  ENOENT: EXIT.FAIL, EEXIST: EXIT.FAIL, ENOTDIR: EXIT.FAIL, EISDIR: EXIT.FAIL, ENOTEMPTY: EXIT.FAIL,
  ENAMETOOLONG: EXIT.FAIL, EINVAL: EXIT.FAIL, ELOOP: EXIT.FAIL, EXDEV: EXIT.FAIL, EBUSY: EXIT.FAIL, EFBIG: EXIT.FAIL,
  ENOSPC: EXIT.NOSPACE, EROFS: EXIT.IO, ELOCKED: EXIT.LOCKED, EBADIMAGE: EXIT.BADIMAGE, EIO: EXIT.IO,
  EUSAGE: EXIT.USAGE, ENOIMAGE: EXIT.USAGE,
  // A read-only open met a directory an asynchronous clone has not expanded yet; the CLI
  // then reopens the image for writing, so users never see it.
  ENEEDWRITE: EXIT.FAIL,
  // Extended attributes and permissions (no such attribute, a namespace or call not
  // supported, a value too large, not allowed).
  ENODATA: EXIT.FAIL, ENOTSUP: EXIT.FAIL, E2BIG: EXIT.FAIL, EACCES: EXIT.FAIL, EPERM: EXIT.FAIL,
}

export class PrismError extends Error {
  readonly exitCode: number
  constructor(readonly code: ErrCode, message: string) {
    super(message)
    this.name = 'PrismError'
    this.exitCode = EXIT_OF[code]
  }
}

export function fail(code: ErrCode, message: string): never {
  throw new PrismError(code, message)
}
