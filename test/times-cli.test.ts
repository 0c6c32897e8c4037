// Times at the edges, through the CLI: a host file's time before 1970 with a part of a second
// (seconds negative, the part counting up) is copied in and out exactly, where `cp -r`
// stopped with an internal error and imported nothing; a time past what a JavaScript Date
// holds is shown (as @SECONDS.NANOSECONDS), where `ls -l` and `stat` failed as a usage error.
import {expect} from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import {execFileSync} from 'node:child_process'
import {prism, tmpDir} from './helpers.js'

describe('times before 1970 and far in the future, through the CLI', function () {
  this.timeout(60_000)
  let dir: string
  let img: string
  before(() => {
    dir = tmpDir()
    img = path.join(dir, 'disk.img')
    expect(prism(['mkfs', img, '--size', '64M']).status).to.equal(0)
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('cp -r in and out keeps times before 1970 with a part of a second, to the nanosecond', () => {
    const src = path.join(dir, 'src')
    fs.mkdirSync(src)
    const times: Record<string, [string, string]> = {
      half: ['-500000000', '-500000000'], // 1969-12-31T23:59:59.5
      old: ['-300020999444444445', '-300020999444444446'],
      edge: ['-1', '-999999999'],
      future: ['4200022000999999999', '4102444800000000001'],
    }
    for (const [name, [m, a]] of Object.entries(times)) {
      fs.writeFileSync(path.join(src, name), name)
      execFileSync('python3', ['-c', 'import os, sys; os.utime(sys.argv[1], ns=(int(sys.argv[2]), int(sys.argv[3])))', path.join(src, name), a, m])
    }
    fs.symlinkSync('half', path.join(src, 'link'))
    execFileSync('python3', ['-c', 'import os, sys; os.utime(sys.argv[1], ns=(-1500000000, -1500000000), follow_symlinks=False)', path.join(src, 'link')])
    const r = prism(['cp', '-r', src, 'root:/t', '-i', img])
    expect(r.stderr).to.equal('')
    expect(r.status).to.equal(0)
    const st = prism(['stat', 'root:/t/half', '-i', img])
    expect(st.status, st.stderr).to.equal(0)
    expect(st.stdout).to.include('1969-12-31T23:59:59.500000000Z')
    const out = path.join(dir, 'out')
    expect(prism(['cp', '-r', 'root:/t', out, '-i', img]).status).to.equal(0)
    for (const [name, [m, a]] of Object.entries(times)) {
      const s = fs.lstatSync(path.join(out, name), {bigint: true})
      expect([String(s.mtimeNs), String(s.atimeNs)], name).to.deep.equal([m, a])
    }
    expect(String(fs.lstatSync(path.join(out, 'link'), {bigint: true}).mtimeNs)).to.equal('-1500000000')
    expect(prism(['fsck', '-i', img]).status).to.equal(0)
  })

  it('export and import keep them too, and GNU tar reads the archive back exactly', () => {
    const tarball = path.join(dir, 't.tar')
    expect(prism(['export', 'root', tarball, '-i', img]).status).to.equal(0)
    expect(prism(['import', '--create', 'back', tarball, '-i', img]).status).to.equal(0)
    const out = path.join(dir, 'back')
    expect(prism(['cp', '-r', 'back:/t', out, '-i', img]).status).to.equal(0)
    const gnu = path.join(dir, 'gnu')
    fs.mkdirSync(gnu)
    execFileSync('tar', ['--warning=no-timestamp', '-xpf', tarball, '-C', gnu])
    for (const name of ['half', 'old', 'edge', 'future']) {
      const want = String(fs.lstatSync(path.join(dir, 'src', name), {bigint: true}).mtimeNs)
      expect(String(fs.lstatSync(path.join(out, name), {bigint: true}).mtimeNs), `${name} through export and import`).to.equal(want)
      expect(String(fs.lstatSync(path.join(gnu, 't', name), {bigint: true}).mtimeNs), `${name} through GNU tar`).to.equal(want)
    }
  })

  it('a time past what a Date holds is shown by ls -l and stat, not an error', () => {
    expect(prism(['write', 'root:/far', '-i', img], {input: 'x'}).status).to.equal(0)
    expect(prism(['touch', '-d', '@9000000000000.5', 'root:/far', '-i', img]).status).to.equal(0)
    const ls = prism(['ls', '-l', 'root:/', '-i', img])
    expect(ls.status, ls.stderr).to.equal(0)
    expect(ls.stdout).to.match(/@9000000000000\.500000000\s+far\n/)
    const st = prism(['stat', 'root:/far', '-i', img])
    expect(st.status, st.stderr).to.equal(0)
    expect(st.stdout).to.include('@9000000000000.500000000')
  })
})
