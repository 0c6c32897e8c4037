// Inputs with more items than a call's arguments may hold: a spread into a call
// (`a.push(...b)`) put each on the stack, and past about 120,000 it was "internal error:
// Maximum call stack size exceeded" (exit 70). Found by a trial of malformed input; each of
// these is valid input and must work (src/arrays.ts).
import {expect} from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import {newImage, prism, tmpDir} from './helpers.js'

/** A ustar header block for `name` (type `type`, `size` bytes), checksum filled in. */
function header(name: string, size: number, type: string): Buffer {
  const h = Buffer.alloc(512)
  h.write(name, 0, 100, 'utf8')
  h.write('0000644\0', 100)
  h.write('0000000\0', 108)
  h.write('0000000\0', 116)
  h.write(size.toString(8).padStart(11, '0') + '\0', 124)
  h.write('00000000000\0', 136)
  h.write('        ', 148)
  h.write(type, 156)
  h.write('ustar\0', 257)
  h.write('00', 263)
  let sum = 0
  for (const b of h) sum += b
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148)
  return h
}
const TEXT = 'hello, scanner\n'
const padded = (b: Buffer) => Buffer.concat([b, Buffer.alloc((512 - (b.length % 512)) % 512)])

describe('inputs of more than 120,000 items', function () {
  this.timeout(300_000)
  let dir: string
  let img: string
  before(() => {
    dir = tmpDir()
    img = newImage(dir, 256 << 20)
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('import: a pax header of 200,000 records (unknown keywords, as GNU tar warns of and goes on)', () => {
    const body = Buffer.from('6 a=b\n'.repeat(200_000))
    const tar = Buffer.concat([header('PaxHeaders/f', body.length, 'x'), padded(body), header('f', TEXT.length, '0'), padded(Buffer.from(TEXT)), Buffer.alloc(1024)])
    const file = path.join(dir, 'manyrecs.tar')
    fs.writeFileSync(file, tar)
    const r = prism(['import', '-i', img, 'root:/x', file])
    expect(r.stderr).to.not.match(/internal error|call stack/)
    expect(r.status, r.stderr).to.equal(0)
    expect(prism(['cat', '-i', img, 'root:/x/f']).stdout).to.equal(TEXT)
  })

  it('clone --exclude-from a file of 200,000 patterns: sync takes them; async and lazy, which keep them, refuse so many', () => {
    const file = path.join(dir, 'excl.txt')
    fs.writeFileSync(file, Array.from({length: 200_000}, (_, i) => `zz${i}*.q`).concat(['f']).join('\n') + '\n')
    let r = prism(['clone', '-i', img, 'root', 'c', '--mode', 'sync', '--exclude-from', file])
    expect(r.stderr).to.not.match(/internal error|call stack/)
    expect(r.status, r.stderr).to.equal(0)
    expect(prism(['ls', '-i', img, 'c:/x']).stdout).to.equal('')
    const before = fs.readFileSync(img)
    for (const mode of ['lazy', 'async']) {
      r = prism(['clone', '-i', img, 'root', `c-${mode}`, '--mode', mode, '--exclude-from', file])
      expect([r.status, r.stderr], mode).to.deep.equal([2, 'prism: 200001 exclude patterns, more than the 4096 an async or lazy clone keeps: clone with --mode sync, or with fewer patterns\n'])
    }
    expect(fs.readFileSync(img).equals(before)).to.equal(true)
  })

  it('scan with 150,000 body signatures', () => {
    const file = path.join(dir, 'many.ndb')
    const hex = (i: number) => (0x1000000000000000n + BigInt(i) * 7919n).toString(16)
    fs.writeFileSync(file, Array.from({length: 150_000}, (_, i) => `Sig.${i}:0:*:${hex(i)}`).concat([`Hi:0:*:${Buffer.from(TEXT).toString('hex')}`]).join('\n') + '\n')
    const r = prism(['scan', '-i', img, 'root', '-s', file])
    expect(r.stderr).to.not.match(/internal error|call stack/)
    expect(r.stdout).to.include('root:/x/f: Hi FOUND')
    expect(r.status, r.stderr).to.equal(1)
  })
})
