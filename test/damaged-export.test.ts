// Copying out of a damaged image (prism cp -r, prism export), and scanning, measuring and
// listing it (prism scan, du, ls -R): an entry the damage keeps from
// being read (a directory block, an extent node, an inode that fails its checks) is named on
// its own line (`cannot read 'FILESET:/path': ...`) and skipped; everything else is copied,
// and the exit status is 1, as cp and tar go on past a file they cannot read. What the damaged
// image still holds can so be rescued before anything is repaired, and the image is not
// touched. The oracle: the same copy after `prism fsck --repair`, less the named entries
// (and lost+found, where the repair puts what it reconnects).
import {expect} from 'chai'
import {execFileSync, spawnSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {pathToFileURL} from 'node:url'
import zlib from 'node:zlib'
import {VIA_OCLIF, prism, tmpDir} from './helpers.js'

/** Every path under `dir` with what it is: a file's content hash, a symlink's target, 'dir'. */
function tree(dir: string): Map<string, string> {
  const out = new Map<string, string>()
  const walk = (rel: string): void => {
    for (const name of fs.readdirSync(path.join(dir, rel))) {
      const p = rel ? `${rel}/${name}` : name
      const st = fs.lstatSync(path.join(dir, p))
      if (st.isDirectory()) {
        out.set(p, 'dir')
        walk(p)
      } else if (st.isSymbolicLink()) out.set(p, `-> ${fs.readlinkSync(path.join(dir, p))}`)
      else out.set(p, `${st.size} ${createHash('sha1').update(fs.readFileSync(path.join(dir, p))).digest('hex')}`)
    }
  }
  walk('')
  return out
}

describe('a damaged image: cp -r, export, scan, du, ls -R, diff and fileset list go through everything readable and name the rest', function () {
  this.timeout(120_000)
  let dir: string
  before(() => {
    dir = tmpDir('prism-damaged-export-')
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  // A damaged directory block, a damaged directory's inline entries, a damaged extent node,
  // a bad extent-map root, a dangling entry, a missing directory block.
  for (const fixture of ['dir-bucket-crc', 'dir-inline-corrupt', 'extent-node-crc', 'extent-root-magic', 'dirent-dangling', 'dir-missing-block']) {
    it(fixture, () => {
      const work = fs.mkdtempSync(path.join(dir, `${fixture}-`))
      const img = path.join(work, 'damaged.img')
      fs.writeFileSync(img, zlib.gunzipSync(fs.readFileSync(path.join('fixtures/fsck', fixture, 'image.gz'))))
      const before = fs.readFileSync(img)
      const out = path.join(work, 'out')
      const cp = prism(['cp', '-r', '-i', img, 'root:/', out])
      const lines = cp.stderr.trim().split('\n')
      expect(cp.status, cp.stderr).to.equal(1)
      for (const l of lines) expect(l).to.match(/^prism: cannot read 'root:\/[^']*': .*run 'prism fsck'$/)
      const named = lines.map((l) => /^prism: cannot read 'root:\/([^']*)'/.exec(l)![1])
      // The export names the same entries and holds the same tree.
      const tar = path.join(work, 'out.tar')
      const ex = prism(['export', '-i', img, 'root', tar])
      expect(ex.status, ex.stderr).to.equal(1)
      expect(ex.stderr.trim().split('\n').map((l) => /^prism: cannot read 'root:\/([^']*)'/.exec(l)?.[1])).to.deep.equal(named)
      const untar = path.join(work, 'untar')
      fs.mkdirSync(untar)
      execFileSync('tar', ['-xf', tar, '-C', untar])
      const got = tree(out)
      expect(tree(untar)).to.deep.equal(got)
      // prism scan goes on past the same damage: the same entries named, every other file's
      // name walked (and each file scanned), exit 2.
      const sig = path.join(work, 'never.ndb')
      fs.writeFileSync(sig, 'Prism.Test.Never:0:*:7a7a7a7a7a7a7a7a7a7a7a7a\n')
      const scan = prism(['scan', 'root', '-s', sig, '--json', '-i', img])
      expect(scan.status, scan.stderr).to.equal(2)
      const report = JSON.parse(scan.stdout) as {errors: Array<{paths: string[]}>, stats: {names: number}}
      expect(report.errors.map((e) => e.paths[0].replace(/^root:\//, '')).sort()).to.deep.equal([...named].sort())
      const files = [...got.values()].filter((v) => v !== 'dir' && !v.startsWith('-> ')).length
      const namedFiles = named.filter((n) => !got.has(n)).length
      expect(report.stats.names).to.equal(files + namedFiles)
      // du names the same entries and counts the rest; ls -R names the directories it cannot list.
      const pathsOf = (stderr: string) => stderr.trim().split('\n').filter(Boolean).map((l) => /^prism: cannot read 'root:\/([^']*)'/.exec(l)?.[1])
      const du = prism(['du', '-s', '-i', img, 'root:/'])
      expect(du.status, du.stderr).to.equal(1)
      expect(pathsOf(du.stderr)).to.deep.equal(named)
      expect(du.stdout).to.match(/ root:\/\n$/)
      const ls = prism(['ls', '-R', '-i', img, 'root:/'])
      const dirsNamed = named.filter((n) => got.get(n) === 'dir')
      expect(ls.status, ls.stderr).to.equal(dirsNamed.length ? 1 : 0)
      expect(pathsOf(ls.stderr)).to.deep.equal(dirsNamed)
      // fileset list shows every fileset: REFER and UNIQUE of one whose tree cannot be walked
      // are '?', with a line saying why; the fast path and oclif alike.
      const viaOclif = (args: string[]) => {
        const r = spawnSync(process.execPath, ['--input-type=module', '-e', VIA_OCLIF, pathToFileURL(path.resolve('.')).href + '/', ...args], {env: {...process.env, PRISM_IMAGE: '', PRISM_NO_BACKGROUND: '1', PRISM_CONTENT_TYPE: ''}})
        return {status: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString()}
      }
      for (const list of [prism(['fileset', 'list', '-i', img]), viaOclif(['fileset', 'list', '-i', img])]) {
        expect(list.status, list.stderr).to.equal(1)
        expect(list.stderr).to.match(/^prism: fileset 'root': REFER and UNIQUE cannot be counted: .*run 'prism fsck'\n/)
        expect(list.stdout).to.match(/^root +- +\S+ \S+ +active +\? +\? /m)
      }
      expect(prism(['fileset', 'list', '--no-space', '-i', img]).status).to.equal(0)
      // diff (snap against root) compares what it can: what it cannot is named, with its subtree
      // left out, exit 1; its listing is that of the repaired image less what lies under a named path.
      const diffDamaged = prism(['diff', '-i', img, 'snap', 'root'])
      const cannot = diffDamaged.stderr.trim().split('\n').filter(Boolean).map((l) => /^prism: cannot compare '([^']*)': .*run 'prism fsck'$/.exec(l)![1])
      expect(diffDamaged.status, diffDamaged.stderr).to.equal(cannot.length ? 1 : 0)
      // None of them touched the image.
      expect(fs.readFileSync(img).equals(before)).to.equal(true)
      // Repaired, the image gives everything; all of it but what was named (and what the repair
      // reconnected) was copied from the damaged one, as it is.
      expect(prism(['fsck', '--repair', '-i', img]).status).to.be.oneOf([0, 1])
      const out2 = path.join(work, 'repaired')
      const diffRepaired = prism(['diff', '-i', img, 'snap', 'root'])
      expect(diffRepaired.status, diffRepaired.stderr).to.equal(0)
      const inside = (line: string) => cannot.some((c) => line.split('\t')[1].startsWith(`${c}/`)) || /\tlost\+found|\t\/lost\+found/.test(line)
      expect(diffDamaged.stdout.split('\n').filter((l) => !l || !inside(l))).to.deep.equal(diffRepaired.stdout.split('\n').filter((l) => !l || !inside(l)))
      const cp2 = prism(['cp', '-r', '-i', img, 'root:/', out2])
      expect(cp2.status, cp2.stderr).to.equal(0)
      const want = tree(out2)
      const under = (p: string) => named.some((n) => p === n || p.startsWith(`${n}/`)) || p === 'lost+found' || p.startsWith('lost+found/')
      const expected = new Map([...want].filter(([p]) => !under(p) || named.includes(p) && want.get(p) === 'dir' && got.has(p)))
      // (a directory that could not be listed is made all the same, empty)
      for (const n of named) if (got.get(n) === 'dir') expected.set(n, 'dir')
      expect(got).to.deep.equal(expected)
      expect(named.length, 'something was named').to.be.greaterThan(0)
    })
  }
})
