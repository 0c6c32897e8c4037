// clamscan's size limits (ClamAV 1.4), so that prism skips and reports the same files:
// a file larger than MaxFileSize (--max-filesize, 100 MiB by default) is not scanned at all,
// nor one larger than MaxScanSize (--max-scansize, 400 MiB: for a plain file, the data one
// file may have scanned); both are then clean, or with --alert-exceeds-max reported as
// Heuristics.Limits.Exceeded.MaxFileSize / .MaxScanSize (MaxFileSize first). A limit of 0 is
// none, but ClamAV never scans a file over INT_MAX - 2 bytes, whatever MaxFileSize says
// (libclamav's cl_engine_set_num clamps it there). Pure: no I/O.
import {PrismError} from '../errors.js'

export interface ScanLimits {
  /** files larger than this are not scanned (Infinity: no limit) */
  maxFileSize: number
  /** files larger than this are not scanned either (Infinity: no limit) */
  maxScanSize: number
  /** report a file skipped for a limit as Heuristics.Limits.Exceeded.* (as clamscan --alert-exceeds-max) */
  alertExceedsMax: boolean
}

/** The largest MaxFileSize ClamAV 1.4 takes (INT_MAX - 2): larger files are never scanned. */
export const CLAMAV_MAX_FILESIZE = 2147483645
export const DEFAULT_MAX_FILESIZE = 100 * 1048576
export const DEFAULT_MAX_SCANSIZE = 400 * 1048576

/** A size as clamscan takes it: digits, optionally followed by k, m or g (KiB, MiB, GiB). */
export function parseLimit(flag: string, text: string): number {
  const m = /^(\d+)([kKmMgG]?)$/.exec(text)
  if (!m) throw new PrismError('EUSAGE', `${flag}: '${text}' is not a size (digits, optionally followed by K, M or G)`)
  const unit = {'': 1, k: 1024, m: 1048576, g: 1073741824}[m[2].toLowerCase() as '' | 'k' | 'm' | 'g']
  return Number(m[1]) * unit
}

/**
 * The limits of a scan with the ClamAV signature engine, as clamscan applies them: its
 * defaults for what is not given, 0 meaning no limit, MaxFileSize clamped to ClamAV's largest.
 */
export function clamscanLimits(maxFileSize: number | undefined, maxScanSize: number | undefined, alertExceedsMax: boolean): ScanLimits {
  const fs = maxFileSize ?? DEFAULT_MAX_FILESIZE
  const ss = maxScanSize ?? DEFAULT_MAX_SCANSIZE
  return {
    maxFileSize: fs === 0 || fs > CLAMAV_MAX_FILESIZE ? CLAMAV_MAX_FILESIZE : fs,
    maxScanSize: ss === 0 ? Infinity : ss,
    alertExceedsMax,
  }
}

/**
 * The limits of a scan by another engine (--exec, --clamd): only those given (0: none). With
 * none given, every file is scanned whatever its size (clamd applies its own StreamMaxLength).
 */
export function givenLimits(maxFileSize: number | undefined, maxScanSize: number | undefined, alertExceedsMax: boolean): ScanLimits | null {
  if (maxFileSize === undefined && maxScanSize === undefined) return null
  return {maxFileSize: maxFileSize ? maxFileSize : Infinity, maxScanSize: maxScanSize ? maxScanSize : Infinity, alertExceedsMax}
}

/** Which limit a file of `size` bytes exceeds (clamscan's order), or null. */
export function exceededLimit(limits: ScanLimits | null | undefined, size: number): 'MaxFileSize' | 'MaxScanSize' | null {
  if (!limits) return null
  if (size > limits.maxFileSize) return 'MaxFileSize'
  if (size > limits.maxScanSize) return 'MaxScanSize'
  return null
}

/** The name clamscan --alert-exceeds-max reports a skipped file under. */
export function exceededName(limit: 'MaxFileSize' | 'MaxScanSize'): string {
  return `Heuristics.Limits.Exceeded.${limit}`
}

/** The limits, for the identity remembered results are kept under (other limits, other verdicts). */
export function limitsKey(limits: ScanLimits | null | undefined): string {
  return limits ? `limits\0${limits.maxFileSize}\0${limits.maxScanSize}\0${limits.alertExceedsMax ? 1 : 0}` : ''
}
