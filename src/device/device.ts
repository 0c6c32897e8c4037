// The one interface through which every byte of an image is read or written. The file
// implementation (file.ts) and the test implementations (mem.ts) sit behind it, so the
// journal and filesystem above never know which they run on.
import {BLOCK_SIZE} from '../format/constants.js'

export interface BlockDevice {
  /** Number of 4 KiB blocks. */
  readonly blocks: number
  readonly readOnly: boolean
  /** Reads buf.length bytes (a multiple of BLOCK_SIZE) starting at `block`. */
  read(block: number, buf: Buffer): void
  /**
   * Reads consecutive buffers (each a multiple of BLOCK_SIZE) starting at `block`, in one
   * call. `stream` (0..3) names which of a reader's interleaved sequential streams this read
   * continues: a file device reads each through a descriptor of its own, so that the host's
   * readahead follows each stream instead of seeing one stream jump back and forth.
   */
  readv?(block: number, bufs: Buffer[], stream?: number): void
  /** Writes buf (a multiple of BLOCK_SIZE) starting at `block`. Not durable until sync(). */
  write(block: number, buf: Buffer): void
  /** Writes consecutive buffers (each a multiple of BLOCK_SIZE) starting at `block`. */
  writev?(block: number, bufs: Buffer[]): void
  /**
   * Makes blocks [block, block + count) read as zeros without writing them, where the host
   * can (fallocate FALLOC_FL_ZERO_RANGE: the host file keeps its space, marked unwritten),
   * after every write handed to writeBehind() has finished. Not durable until sync(), as a
   * write. False when the device cannot (the caller writes zeros); absent means the same.
   */
  zero?(block: number, count: number): boolean
  /**
   * Has the host set aside room for [block, block+count) (fallocate, the file's size kept),
   * so that a later write there cannot fail for want of space: a journal commit reserves its
   * blocks' homes before its commit record, which a home write that failed after it would
   * leave committed beside a command that said it failed. Throws the host's ENOSPC as a
   * PrismError; absent, or a host that cannot, does nothing.
   */
  reserve?(block: number, count: number): void
  /** Makes every completed write durable (fdatasync). */
  sync(): void
  /**
   * Where `block` lies in the host file (a descriptor open on it for reading, and the byte
   * position), so that data can be sent from there without being read into memory
   * (sendfile). None for memory, or where blocks do not lie in one file in order.
   */
  hostSpan?(block: number): {fd: number, pos: number}
  /** The host file's device and inode numbers (none for memory), so that no command writes a host file over the image itself. */
  identity?(): {dev: bigint, ino: bigint}
  /**
   * A hint: start writing completed writes to stable storage in the background, so that a
   * later sync() has less to wait for. It promises nothing; only sync() makes writes durable.
   */
  startWriteback?(): void
  /**
   * Memory for file data that writeBehind() takes without a copy; plain memory where the
   * device has no write-behind (the absence of this method means the same).
   */
  dataBuffer?(bytes: number): Buffer
  /**
   * Starts writing `bufs` (one after another from `block`) on another thread and returns a
   * ticket (> 0), or returns 0 without writing when it cannot take them (the caller then
   * writes them itself). The caller keeps the buffers unchanged, and serves reads of those
   * blocks from them, until finished() reaches the ticket. sync() first waits for every
   * write handed over and throws the first error among them.
   */
  writeBehind?(block: number, bufs: Buffer[]): number
  /** The highest ticket up to which every writeBehind() has finished. */
  finished?(): number
  /** Waits until finished() reaches `ticket`. */
  waitFinished?(ticket: number): void
  /** Waits for every writeBehind() and forgets their errors (data of an abandoned operation). */
  settle?(): void
  close(): void
  /**
   * Called with each run of blocks [block, block + count) just before the device overwrites
   * it: by write(), writev(), writeBehind() (before the write is handed to its thread) and zero(), so
   * whoever set it can still read what the blocks held (a snapshot's pre-image log,
   * src/device/snapshot.ts). Null or absent: nobody asks.
   */
  beforeWrite?: ((block: number, count: number) => void) | null
  /** True on a device just created whose every block reads as zero (a new sparse file). */
  readonly createdZero?: boolean
  /**
   * The runs [first, end) of blocks within [start, start + count) that may hold data: the
   * blocks between them are holes of a sparse file and read as zero. A device that cannot
   * tell returns the whole range (as does the absence of this method).
   */
  dataRuns?(start: number, count: number): Array<[number, number]>
}

export function blockBuf(n = 1): Buffer {
  return Buffer.alloc(n * BLOCK_SIZE)
}
