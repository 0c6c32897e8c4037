// Decode errors raised by src/format when bytes do not hold what they should.
// Each names the structure and the field that failed, so fsck and the CLI can say which.

export class FormatError extends Error {
  constructor(readonly structure: string, readonly field: 'magic' | 'version' | 'checksum' | 'value', message: string) {
    super(`${structure}: ${message}`)
    this.name = 'FormatError'
  }
}
