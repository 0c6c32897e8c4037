// The memory small files of an import are read into: slices of one pooled buffer of the
// store (8 MiB), handed to it without a copy, so that an import of many small files makes one
// allocation per 8 MiB of them rather than one per file. Shared by cp -r into the image and
// the tar import. The store takes the buffer back once it has written it (doneWith).
import type {BlockStore} from '../journal/store.js'

export class SmallFileBuffers {
  private buf: Buffer | null = null
  private used = 0

  constructor(private readonly store: BlockStore) {}

  /** `bytes` (whole blocks, less than a pooled buffer) of memory given to the store. */
  take(bytes: number): Buffer {
    if (!this.buf || this.used + bytes > this.buf.length) {
      if (this.buf) this.store.doneWith(this.buf)
      this.buf = this.store.dataBuffer()
      this.used = 0
    }
    const out = this.buf.subarray(this.used, this.used + bytes)
    this.used += bytes
    return out
  }

  /** Nothing more is read into the current buffer: it goes back once written. */
  release(): void {
    if (this.buf) this.store.doneWith(this.buf)
    this.buf = null
  }
}
