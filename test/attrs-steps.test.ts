// chmod -R and chown -R in steps (src/ops/attrs.ts walkOwnedSteps), as a server runs them
// between its mounts' requests: what those requests remove or rename between two steps is
// passed over, and every inode still in the tree is changed once.
import {expect} from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import {chmodSteps, chownSteps} from '../src/ops/attrs.js'
import {edit, newImage, tmpDir} from './helpers.js'

describe('chmod -R and chown -R in steps, the tree changed between them', () => {
  let dir: string
  beforeEach(() => {
    dir = tmpDir('prism-attrsteps-')
  })
  afterEach(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('entries removed or renamed between steps are passed over; every other inode is changed', () => {
    const img = newImage(dir, 64 * 1024 * 1024)
    edit(img, (ns) => {
      ns.mkdir('/t')
      for (let d = 0; d < 6; d++) {
        ns.mkdir(`/t/d${d}`)
        for (let f = 0; f < 20; f++) ns.writeFile(`/t/d${d}/f${f}`, Buffer.from(`${d}/${f}`), {mode: 0o644})
      }
      let changes = 0
      const steps = chmodSteps(ns, '/t', () => 0o600, () => changes)
      let n = 0
      for (let r = steps.next(); !r.done; r = steps.next()) {
        n++
        // What a mount does meanwhile, once d0 to d3 are changed and wait to be listed: files
        // go, a directory goes, one is renamed away, and one not reached yet too.
        if (n === 5) {
          for (let f = 0; f < 20; f += 2) ns.unlink(`/t/d0/f${f}`)
          ns.remove('/t/d3', {recursive: true})
          ns.rename('/t/d1', '/moved')
          ns.rename('/t/d4', '/moved4')
          changes++
        }
      }
      const modes = (p: string): number[] => ns.readdir(p).flatMap((e) => e.type === 'dir' ? [ns.stat(`${p}/${e.name}`).perm, ...modes(`${p}/${e.name}`)] : [ns.stat(`${p}/${e.name}`).perm])
      expect(new Set(modes('/t'))).to.deep.equal(new Set([0o600]))
      // (d1 was renamed out of the tree before it was listed, d4 before the walk reached it)
      expect([ns.stat('/moved').perm, ns.stat('/moved/f0').perm, ns.stat('/moved4').perm, ns.stat('/moved4/f0').perm]).to.deep.equal([0o600, 0o644, 0o755, 0o644])
      const owned = chownSteps(ns, '/t', {uid: 7, gid: 8}, {recursive: true}, () => changes)
      let r = owned.next()
      while (!r.done) r = owned.next()
      expect(r.value).to.equal(1 + 3 + 10 + 2 * 20)
    })
  })
})
