// The addon's batched CRC-32 (native/sys.c crc32Many: carry-less multiplication where the
// processor has it, zlib's otherwise) against format/checksum.ts crc32, on random records of
// every length around the 64- and 16-byte steps of its folding.
import {expect} from 'chai'
import fc from 'fast-check'
import {crc32} from '../src/format/checksum.js'
import {crc32Many, fastCrc32, sys} from '../src/sys.js'

describe('sys: crc32Many', () => {
  it('the addon has it', () => {
    expect(sys().crc32Many).to.be.a('function')
  })

  it('equals crc32 of each record, for any record length and stride', () => {
    fc.assert(fc.property(
      fc.integer({min: 0, max: 300}), fc.integer({min: 0, max: 40}), fc.integer({min: 1, max: 8}), fc.integer({min: 0, max: 2 ** 32 - 1}),
      (len, gap, count, seed) => {
        const stride = len + gap
        const buf = Buffer.alloc(stride * count + 7)
        for (let i = 0, x = seed; i < buf.length; i++) { x = (Math.imul(x, 1103515245) + 12345) >>> 0; buf[i] = x >>> 24 }
        const out = new Uint32Array(count)
        crc32Many(buf, count, stride, len, out)
        for (let k = 0; k < count; k++) expect(out[k]).to.equal(crc32(buf, k * stride, k * stride + len))
      }), {numRuns: 400})
  })

  it('refuses records past the end of the buffer', () => {
    expect(() => sys().crc32Many!(Buffer.alloc(512), 3, 256, 252, new Uint32Array(3))).to.throw(TypeError)
  })
})

describe('sys: fastCrc32', () => {
  it('equals crc32 of any range, from any seed', () => {
    fc.assert(fc.property(fc.uint8Array({minLength: 0, maxLength: 4200}), fc.nat(), fc.nat(), fc.integer({min: 0, max: 2 ** 32 - 1}), (data, a, b, seed) => {
      const start = a % (data.length + 1)
      const end = start + (b % (data.length - start + 1))
      expect(fastCrc32(data, start, end, seed)).to.equal(crc32(data, start, end, seed))
    }), {numRuns: 300})
  })
})
