// A lazy clone that a mount's reads expand whole ends its expansion in the server (between
// requests, src/server/image.ts tick): `prism fileset list` then shows it active, as after
// `prism expand`, while the mount stays up and shows the same tree. A clone read in part
// stays expanding.
import {expect} from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import {cliOk, expectClean, Scratch, skipWithoutFuse} from './mount-support.js'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Every path under `dir` with its content (files) or target (symlinks), sorted. */
function tree(dir: string, at = ''): string[] {
  const out: string[] = []
  for (const name of fs.readdirSync(path.join(dir, at)).sort()) {
    const p = path.join(at, name)
    const st = fs.lstatSync(path.join(dir, p))
    if (st.isDirectory()) out.push(`${p}/`, ...tree(dir, p))
    else if (st.isSymbolicLink()) out.push(`${p} -> ${fs.readlinkSync(path.join(dir, p))}`)
    else out.push(`${p} ${fs.readFileSync(path.join(dir, p)).toString('hex').slice(0, 32)} nlink=${st.nlink}`)
  }
  return out
}

describe('prism mount: a lazy clone read whole through the mount ends its expansion', function () {
  this.timeout(120_000)
  let s: Scratch

  before(function () {
    skipWithoutFuse(this)
    s = new Scratch()
  })

  after(async () => {
    await s?.cleanup()
  })

  const stateOf = async (name: string): Promise<string> => {
    const list = JSON.parse(await cliOk(['fileset', 'list', '-i', s.image, '--json', '--no-space'])) as Array<{name: string, state: string}>
    return list.find((f) => f.name === name)!.state
  }

  it('read in part it stays expanding; read whole it becomes active within seconds, the mount showing the same tree throughout; fsck clean', async () => {
    const host = path.join(s.dir, 'src')
    for (const d of ['a/b/c', 'x/y', 'wide']) fs.mkdirSync(path.join(host, d), {recursive: true})
    fs.writeFileSync(path.join(host, 'a/b/c/f'), 'deep\n')
    fs.writeFileSync(path.join(host, 'x/h1'), 'linked\n')
    fs.linkSync(path.join(host, 'x/h1'), path.join(host, 'a/h2'))
    fs.symlinkSync('a/b/c/f', path.join(host, 's'))
    for (let i = 0; i < 100; i++) fs.writeFileSync(path.join(host, `wide/f${i}`), `${i}\n`)
    await cliOk(['cp', '-a', '-i', s.image, `${host}/.`, 'root:/'])
    await cliOk(['clone', '-i', s.image, 'root', 'c', '--mode', 'lazy', '--exclude', '/x/y'])
    const mp = s.mountpoint()
    await s.mount('c', mp)
    fs.readdirSync(path.join(mp, 'a'))
    await sleep(2500) // past a tick of the server
    expect(await stateOf('c')).to.equal('expanding')
    const seen = tree(mp)
    expect(seen).to.include('x/').and.not.include('x/y/')
    let state = ''
    for (let t = 0; t < 50 && state !== 'active'; t++) {
      await sleep(100)
      state = await stateOf('c')
    }
    expect(state).to.equal('active')
    expect(tree(mp)).to.deep.equal(seen)
    await s.umount(mp)
    await expectClean(s.image)
    expect(await cliOk(['cat', '-i', s.image, 'c:/a/b/c/f'])).to.equal('deep\n')
  })
})
