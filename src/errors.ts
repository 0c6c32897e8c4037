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
  | 'ENEEDWRITE' | 'EINTR' | 'EACCES' | 'EHOST' | 'ENODATA' | 'ENOTSUP' | 'E2BIG' | 'EPERM'

const EXIT_OF: Record<ErrCode, number> = {
  ENOENT: EXIT.FAIL, EEXIST: EXIT.FAIL, ENOTDIR: EXIT.FAIL, EISDIR: EXIT.FAIL, ENOTEMPTY: EXIT.FAIL,
  ENAMETOOLONG: EXIT.FAIL, EINVAL: EXIT.FAIL, ELOOP: EXIT.FAIL, EXDEV: EXIT.FAIL, EBUSY: EXIT.FAIL, EFBIG: EXIT.FAIL,
  ENOSPC: EXIT.NOSPACE, EROFS: EXIT.IO, ELOCKED: EXIT.LOCKED, EBADIMAGE: EXIT.BADIMAGE, EIO: EXIT.IO,
  EUSAGE: EXIT.USAGE, ENOIMAGE: EXIT.USAGE,
  // A read-only open found a clone still expanding and the user may write the image: the CLI
  // then reopens it for writing, so that expansion on demand stays done (src/cli/session.ts).
  // Users never see it.
  ENEEDWRITE: EXIT.FAIL,
  // Stopped by a signal (src/interrupt.ts): 128 + the signal's number, as a shell reports it.
  EINTR: 130,
  // A host file or directory that this process may not read or write (cp), and any other
  // failure of a host file or stream (an I/O error, a full host disk, a spool in TMPDIR): the
  // operation could not be done; 7 is kept for the image's own I/O errors.
  EACCES: EXIT.FAIL, EHOST: EXIT.FAIL,
  // Extended attributes and permissions (no such attribute, a namespace or call not
  // supported, a value too large, not allowed).
  ENODATA: EXIT.FAIL, ENOTSUP: EXIT.FAIL, E2BIG: EXIT.FAIL, EPERM: EXIT.FAIL,
}

export class PrismError extends Error {
  readonly exitCode: number
  constructor(readonly code: ErrCode, message: string, exitCode?: number) {
    super(message)
    this.name = 'PrismError'
    this.exitCode = exitCode ?? EXIT_OF[code]
  }
}

/**
 * Why a host call failed, in words: Node's "ENOENT: no such file or directory, open '/x'" is
 * "no such file or directory" (the caller names the file, once).
 */
export function hostReason(e: unknown): string {
  // (Node's text for reading a directory as a file; coreutils say "Is a directory")
  if ((e as NodeJS.ErrnoException | null)?.code === 'EISDIR') return 'is a directory'
  const m = e instanceof Error ? e.message : String(e)
  return m.replace(/^[A-Z][A-Z0-9_]*: /, '').replace(/, [a-z_]+(?: '[^']*')?(?: -> '[^']*')?$/, '')
}

export function fail(code: ErrCode, message: string): never {
  throw new PrismError(code, message)
}

/**
 * An error about one argument of a command that takes several (a missing path, an existing
 * target, a directory where a file was expected ...: exit status 1). The command reports it
 * and goes on with the next argument, as coreutils do; any other error (usage, a locked,
 * damaged or full image, I/O) stops the command.
 */
export function isArgumentError(e: unknown): e is PrismError {
  return e instanceof PrismError && e.exitCode === EXIT.FAIL && e.code !== 'ENEEDWRITE'
}

/**
 * Damage met in reading the image (EBADIMAGE): a structure that fails its checks. Walks that
 * read (cp and export out, scan, du, ls, diff, fileset list) name the entry it keeps from
 * being read and go on with the rest; anything else stops them.
 */
export function isDamage(e: unknown): e is PrismError {
  return e instanceof PrismError && e.code === 'EBADIMAGE'
}

/** An error another process (a prism server) sent as its code and message. */
export function errorFromWire(code: unknown, message: unknown): PrismError {
  const known = typeof code === 'string' && Object.hasOwn(EXIT_OF, code)
  return new PrismError(known ? code as ErrCode : 'EIO', typeof message === 'string' ? message : 'the prism server failed')
}
