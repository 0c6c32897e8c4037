// The copy a served image's server makes from the CLI's stream (src/ops/hoststream.ts, run by
// src/ops/copy.ts copySteps) is the copy the command makes alone (copy(), reading the host):
// the same tree to the inode number, the same stats and the same errors in the same order,
// whatever the stream's chunks and wherever the copy yields (fast-check picks both). The
// destination holds entries cp will not replace (a file where the host has a directory, a
// directory where it has a file), so the server passes over the records of what it skips.
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import fc from 'fast-check'
import {withImage} from '../src/fs/image.js'
import {copy, copySteps, type CopyStats, type Location} from '../src/ops/copy.js'
import {END_FRAME, hostFrames, StreamSource, streamedSources} from '../src/ops/hoststream.js'
import {treeOf} from './crash-lib.js'
import {edit, newImage, tmpDir} from './helpers.js'
import {namespace} from '../src/fs/image.js'

describe('copy into the image from the CLI\'s stream (a served image\'s cp -r)', function () {
  this.timeout(120_000)
  let dir: string
  let tree: string

  before(() => {
    dir = tmpDir('prism-copyin-')
    tree = path.join(dir, 'tree')
    const p = (...x: string[]) => path.join(tree, ...x)
    for (const d of ['a/b/c', 'conflict/sub', 'x-host-dir']) fs.mkdirSync(p(d), {recursive: true})
    fs.writeFileSync(p('empty'), '')
    fs.writeFileSync(p('a/small'), 'small file\n')
    fs.writeFileSync(p('a/b/mid'), crypto.randomBytes(70_000))
    fs.writeFileSync(p('a/b/c/large'), crypto.randomBytes(9 * 1024 * 1024 + 123)) // two 8 MiB reads
    const sp = fs.openSync(p('a/sparse'), 'w') // a large file with holes: read by its data ranges
    fs.writeSync(sp, Buffer.alloc(5000, 3), 0, 5000, 12 * 1024 * 1024)
    fs.writeSync(sp, Buffer.alloc(4096, 4), 0, 4096, 0)
    fs.ftruncateSync(sp, 20 * 1024 * 1024)
    fs.closeSync(sp)
    fs.writeFileSync(p('conflict/sub/lost'), 'never copied: its directory meets a file')
    fs.writeFileSync(p('conflict/kept'), 'never copied either')
    fs.writeFileSync(p('x-host-dir/inside'), 'copied into the existing directory')
    fs.writeFileSync(p('x-file'), 'meets a directory: not copied')
    fs.symlinkSync('a/small', p('link'))
    fs.linkSync(p('a/small'), p('a/b/hard'))
    execFileSync('mkfifo', [p('fifo')])
    try {
      execFileSync('setfattr', ['-n', 'user.note', '-v', 'kept', p('a/b/mid')])
    } catch {
      // no user.* attributes here
    }
  })

  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  /** An image whose root:/dst holds what cp will not replace. */
  function target(): string {
    const img = newImage(tmpDir('prism-copyin-img-'), 128 * 1024 * 1024)
    edit(img, (ns) => {
      ns.mkdir('/dst')
      ns.mkdir('/dst/tree')
      ns.writeFile('/dst/tree/conflict', Buffer.from('a file where the host has a directory'))
      ns.mkdir('/dst/tree/x-file')
    })
    return img
  }

  const srcs: Location[] = [{kind: 'host', path: ''}]
  const dst: Location = {kind: 'image', fileset: 'root', path: '/dst'}
  const describe = (img: string) => withImage(img, {write: false}, (vol) => treeOf(namespace(vol, 'root')))

  function alone(): {stats: CopyStats, tree: string[]} {
    const img = target()
    srcs[0] = {kind: 'host', path: tree}
    const stats = withImage(img, {write: true}, (vol) => copy(vol, srcs, dst, {recursive: true, keepGoing: true}))
    return {stats, tree: describe(img)}
  }

  it('gives the tree, stats and errors of the copy alone, whatever the chunks and the yields', () => {
    const want = alone()
    expect(want.stats.errors.map((e) => e.code)).to.deep.equal(['ENOTDIR', 'EISDIR'])
    const frames = Buffer.concat([...hostFrames([tree], true), END_FRAME])
    fc.assert(fc.property(fc.array(fc.integer({min: 1, max: 300_000}), {minLength: 1, maxLength: 40}), fc.integer({min: 0, max: 3}), (cuts, yieldEvery) => {
      const img = target()
      const stats = withImage(img, {write: true}, (vol) => {
        const source = new StreamSource(streamedSources([tree]))
        let asked = 0
        // a slice "ends" every few questions: the copy yields with bytes still waiting
        source.yieldNow = () => yieldEvery > 0 && ++asked % (yieldEvery * 7) === 0
        const steps = copySteps(vol, [{kind: 'host', path: tree}], dst, {recursive: true, keepGoing: true}, source)
        let at = 0
        let i = 0
        for (;;) {
          const r = steps.next()
          if (r.done) return r.value
          if (source.starved) {
            expect(at, 'the copy waits for bytes that were all sent').to.be.below(frames.length)
            const n = cuts[i++ % cuts.length]
            source.push(frames.subarray(at, at + n))
            at += n
          }
        }
      })
      expect(stats).to.deep.equal(want.stats)
      expect(describe(img)).to.deep.equal(want.tree)
      fs.rmSync(path.dirname(img), {recursive: true, force: true})
    }), {numRuns: 4})
  })
})
