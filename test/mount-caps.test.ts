// The binding answers getxattr("security.capability") itself for nodes it saw have none (the
// kernel asks before every write(2); src/fuse/libfuse.ts capCache, native/fuse NOCAP_SLOTS).
// Such an answer must never outlive the absence: after each way a file can gain the attribute
// (through the same mount, through another mount of the image, through a prism command on the
// served image) every mount shows it at once, and a write through a mount still drops it (the
// kernel can only remove what getxattr shows it). Each file is first written through both
// mounts, so that both caches hold it, before it gains the attribute.
import {expect} from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import {py} from './fuse-support.js'
import {cliOk, Scratch, skipWithoutFuse} from './mount-support.js'

/** A version 2 file capability: cap_net_raw in the permitted set, effective. */
const CAP_HEX = '0100000200200000000000000000000000000000'

/** security.capability of `p` as hex, or null when it has none (python: os.getxattr). */
async function capOf(p: string): Promise<string | null> {
  return await py(`
import errno, json, os, sys
try: print(json.dumps(os.getxattr(sys.argv[1], 'security.capability').hex()))
except OSError as e:
    if e.errno != errno.ENODATA: raise
    print('null')
`, p) as string | null
}

async function setCap(p: string): Promise<void> {
  await py(`import os, sys; os.setxattr(sys.argv[1], 'security.capability', bytes.fromhex(sys.argv[2])); print(1)`, p, CAP_HEX)
}

/** Appends through a mount: the kernel asks for security.capability first. */
function append(p: string, text: string): void {
  fs.appendFileSync(p, text)
}

describe('prism mount: the binding\'s "no capability" answers never outlive the absence', function () {
  this.timeout(120_000)
  let s: Scratch
  let a: string
  let b: string

  before(async function () {
    skipWithoutFuse(this)
    if (process.getuid?.() !== 0) {
      console.log('      capability cache test skipped: setting security.capability needs root (CAP_SETFCAP)')
      this.skip()
    }
    s = new Scratch()
    a = s.mountpoint('a')
    b = s.mountpoint('b')
    await s.mount('root', a)
    await s.mount('root', b)
  })

  after(async () => {
    await s?.cleanup()
  })

  let k = 0
  /** A new file written through both mounts (both now cache "no capability" for it). */
  async function fresh(): Promise<string> {
    const name = `f${k++}`
    fs.writeFileSync(path.join(a, name), 'one\n')
    append(path.join(a, name), 'two\n')
    append(path.join(b, name), 'three\n')
    expect(await capOf(path.join(a, name))).to.equal(null)
    expect(await capOf(path.join(b, name))).to.equal(null)
    return name
  }

  const ways: Record<string, (name: string) => Promise<void>> = {
    'set through the same mount': (name) => setCap(path.join(a, name)),
    'set through another mount of the image': (name) => setCap(path.join(b, name)),
    'set by prism xattr on the served image': async (name) => {
      await cliOk(['xattr', 'set', `root:/${name}`, 'security.capability', `0x${CAP_HEX}`, '-i', s.image])
    },
  }

  for (const [way, set] of Object.entries(ways)) {
    it(`${way}: both mounts show it at once, and a write drops it everywhere`, async () => {
      const name = await fresh()
      await set(name)
      expect(await capOf(path.join(a, name)), 'through mount a').to.equal(CAP_HEX)
      expect(await capOf(path.join(b, name)), 'through mount b').to.equal(CAP_HEX)
      // A write through mount a: the kernel sees the capability and removes it.
      append(path.join(a, name), 'four\n')
      expect(await capOf(path.join(a, name))).to.equal(null)
      expect(await capOf(path.join(b, name))).to.equal(null)
      const list = JSON.parse(await cliOk(['xattr', 'list', `root:/${name}`, '--json', '-i', s.image]))
      expect(list.xattrs.map((x: {name: string}) => x.name)).to.not.include('security.capability')
      expect(fs.readFileSync(path.join(b, name), 'utf8')).to.equal('one\ntwo\nthree\nfour\n')
    })
  }

  it('many files written and capped in turn: every answer is the file\'s own', async () => {
    const names: string[] = []
    for (let i = 0; i < 40; i++) names.push(await fresh())
    // every other file gains the capability, alternating the mount it is set through
    for (let i = 0; i < names.length; i += 2) await setCap(path.join(i % 4 === 0 ? a : b, names[i]!))
    for (let i = 0; i < names.length; i++) {
      for (const mp of [a, b]) expect(await capOf(path.join(mp, names[i]!)), `${names[i]} through ${mp}`).to.equal(i % 2 === 0 ? CAP_HEX : null)
    }
  })
})
