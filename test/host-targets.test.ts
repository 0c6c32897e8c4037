// Host files a command writes to are written into, never replaced or removed unless the user
// asked for that. A file copied or exported onto an existing device (a null or full device,
// as /dev/null and /dev/full), a FIFO, or /dev/stdout goes into it, as cp and tar do (any other
// symlink at a cp destination is replaced, never written through: test/replace.test.ts); a failed
// export removes only an archive it made itself; and no command writes over the image file it
// works on, under any name (the same path, a symlink, a hard link, an entry of a recursive
// copy, or its own standard output). The devices are made in the test's own directory, so a
// regression cannot break the machine's /dev.
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {BIN, newImage, prism, sha256File, tmpDir} from './helpers.js'

const isRoot = process.getuid?.() === 0

function mknod(p: string, type: 'c' | 'p', major = 0, minor = 0): void {
  const r = spawnSync('mknod', type === 'p' ? [p, 'p'] : [p, 'c', String(major), String(minor)])
  if (r.status !== 0) throw new Error(`mknod ${p}: ${r.stderr.toString()}`)
}

/** The node at `p` is still the character device major:minor. */
function expectCharDev(p: string, major: number, minor: number): void {
  const st = fs.lstatSync(p)
  expect(st.isCharacterDevice(), `${p} is no longer a device`).to.equal(true)
  expect([Math.floor(st.rdev / 256), st.rdev % 256]).to.deep.equal([major, minor])
}

describe('host targets: what a command writes to on the host is written into, never replaced', function () {
  let dir: string
  let img: string
  let imgSha: string

  beforeEach(() => {
    dir = tmpDir()
    img = newImage(dir)
    fs.writeFileSync(path.join(dir, 'src.txt'), 'hello\n')
    expect(prism(['cp', '-i', img, path.join(dir, 'src.txt'), 'root:/f']).status).to.equal(0)
    expect(prism(['mkdir', '-i', img, 'root:/d']).status).to.equal(0)
    expect(prism(['cp', '-i', img, path.join(dir, 'src.txt'), 'root:/d/disk.img']).status).to.equal(0)
    expect(prism(['cp', '-i', img, path.join(dir, 'src.txt'), 'root:/d/other']).status).to.equal(0)
    imgSha = sha256File(img)
  })

  afterEach(() => {
    fs.rmSync(dir, {recursive: true, force: true})
  })

  describe('devices and FIFOs', function () {
    before(function () {
      if (!isRoot) {
        console.log('      device cases skipped: making device nodes needs root')
        this.skip()
      }
    })

    it('cp onto a null device writes into it; the device stays', () => {
      const nul = path.join(dir, 'null')
      mknod(nul, 'c', 1, 3)
      const r = prism(['cp', '-i', img, 'root:/f', nul])
      expect(r.status, r.stderr).to.equal(0)
      expectCharDev(nul, 1, 3)
    })

    it('cp onto a full device fails with one line, and the device stays', () => {
      const full = path.join(dir, 'full')
      mknod(full, 'c', 1, 7)
      const r = prism(['cp', '-i', img, 'root:/f', full])
      expect(r.status).to.not.equal(0)
      expect(r.stderr.trim().split('\n')).to.have.length(1)
      expect(r.stderr).to.match(/^prism: .*full/)
      expectCharDev(full, 1, 7)
    })

    it('cp -r into a directory holding a device of the same name writes into it', () => {
      const out = path.join(dir, 'out')
      fs.mkdirSync(out)
      mknod(path.join(out, 'other'), 'c', 1, 3)
      const r = prism(['cp', '-r', '-i', img, 'root:/d/other', 'root:/d/disk.img', out])
      expect(r.status, r.stderr).to.equal(0)
      expectCharDev(path.join(out, 'other'), 1, 3)
      expect(fs.readFileSync(path.join(out, 'disk.img'), 'utf8')).to.equal('hello\n')
    })

    it('cp onto a FIFO writes the content into it; the FIFO stays', async () => {
      const fifo = path.join(dir, 'fifo')
      mknod(fifo, 'p')
      const reader = spawnSync('sh', ['-c', `cat ${fifo} > ${path.join(dir, 'got')} & ${process.execPath} ${BIN} cp -i ${img} root:/f ${fifo}; wait`])
      expect(reader.status, reader.stderr.toString()).to.equal(0)
      expect(fs.readFileSync(path.join(dir, 'got'), 'utf8')).to.equal('hello\n')
      expect(fs.lstatSync(fifo).isFIFO()).to.equal(true)
    })

    it('export onto a null device works, and onto a full device fails without removing it', () => {
      const nul = path.join(dir, 'null')
      const full = path.join(dir, 'full')
      mknod(nul, 'c', 1, 3)
      mknod(full, 'c', 1, 7)
      expect(prism(['export', '-i', img, 'root', nul]).status).to.equal(0)
      expectCharDev(nul, 1, 3)
      const r = prism(['export', '-i', img, 'root', full])
      expect(r.status).to.not.equal(0)
      expect(r.stderr.trim().split('\n')).to.have.length(1)
      expectCharDev(full, 1, 7)
    })
  })

  it('a failed export removes the archive it made, and only that', function () {
    if (isRoot) {
      // An archive that does not fit (a 64 KiB tmpfs, a 1 MiB file) is removed: it was made here.
      const small = path.join(dir, 'small')
      fs.mkdirSync(small)
      fs.writeFileSync(path.join(dir, 'big'), Buffer.alloc(1 << 20, 7))
      expect(prism(['cp', '-i', img, path.join(dir, 'big'), 'root:/big']).status).to.equal(0)
      expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', small]).status).to.equal(0)
      try {
        const made = path.join(small, 'new.tar')
        const r = prism(['export', '-i', img, 'root', made])
        expect(r.status).to.not.equal(0)
        expect(r.stderr.trim().split('\n')).to.have.length(1)
        expect(fs.existsSync(made)).to.equal(false)
        // The same export onto an archive that was there before leaves that file in place.
        fs.writeFileSync(path.join(small, 'old.tar'), 'old\n')
        const r2 = prism(['export', '-i', img, 'root', path.join(small, 'old.tar')])
        expect(r2.status).to.not.equal(0)
        expect(fs.existsSync(path.join(small, 'old.tar'))).to.equal(true)
      } finally {
        spawnSync('umount', ['-l', small])
      }
    } else {
      console.log('      the full-filesystem case skipped: mounting a small tmpfs needs root')
    }
    // An existing archive the user named is written into (hard links to it see the new one).
    const old = path.join(dir, 'old.tar')
    fs.writeFileSync(old, 'old\n')
    fs.linkSync(old, path.join(dir, 'old-link.tar'))
    expect(prism(['export', '-i', img, 'root', old]).status).to.equal(0)
    expect(sha256File(path.join(dir, 'old-link.tar'))).to.equal(sha256File(old))
    expect(fs.statSync(old).size).to.be.greaterThan(1024)
  })

  it('cp replaces a symlink at the destination and never writes through it, except the streams /dev and /proc name', () => {
    const real = path.join(dir, 'precious')
    fs.writeFileSync(real, 'precious\n')
    fs.symlinkSync('precious', path.join(dir, 'link'))
    const r = prism(['cp', '-i', img, 'root:/f', path.join(dir, 'link')])
    expect(r.status, r.stderr).to.equal(0)
    expect(fs.readFileSync(real, 'utf8')).to.equal('precious\n')
    expect(fs.lstatSync(path.join(dir, 'link')).isFile()).to.equal(true)
    expect(fs.readFileSync(path.join(dir, 'link'), 'utf8')).to.equal('hello\n')
    for (const stream of ['/dev/stdout', '/dev/fd/1', '/proc/self/fd/1']) {
      const link = stream === '/dev/stdout' ? stream : stream === '/dev/fd/1' ? '/dev/fd' : '/proc/self'
      const before = fs.readlinkSync(link)
      const out = prism(['cp', '-i', img, 'root:/f', stream])
      expect(out.status, out.stderr).to.equal(0)
      expect(out.stdout).to.equal('hello\n')
      if (link !== '/proc/self') expect(fs.readlinkSync(link)).to.equal(before)
    }
    // through /dev/stdout into a regular file (and a pipe): written where stdout stands, as cat writes
    const piped = spawnSync('sh', ['-c', `${process.execPath} ${BIN} cp -i ${img} root:/f /dev/stdout | cat`], {env: {...process.env, PRISM_NO_BACKGROUND: '1'}})
    expect(piped.status, piped.stderr.toString()).to.equal(0)
    expect(piped.stdout.toString()).to.equal('hello\n')
    const outFile = path.join(dir, 'out.txt')
    fs.writeFileSync(outFile, '')
    const fd = fs.openSync(outFile, 'a')
    try {
      const r2 = spawnSync(process.execPath, [BIN, 'cp', '-i', img, 'root:/f', '/dev/stdout'], {stdio: ['ignore', fd, 'pipe'], env: {...process.env, PRISM_NO_BACKGROUND: '1'}})
      expect(r2.status, r2.stderr.toString()).to.equal(0)
    } finally {
      fs.closeSync(fd)
    }
    expect(fs.readFileSync(outFile, 'utf8')).to.equal('hello\n')
    expect(fs.lstatSync('/dev/stdout').isSymbolicLink()).to.equal(true)
  })

  describe('the image itself is never a destination', () => {
    it('export onto the image, by its name or a symlink, is refused and the image is unchanged', () => {
      fs.symlinkSync('disk.img', path.join(dir, 'alias.tar'))
      for (const target of [img, path.join(dir, 'alias.tar')]) {
        const r = prism(['export', '-i', img, 'root', target])
        expect(r.status, target).to.equal(2)
        expect(r.stderr).to.match(/^prism: .*the image itself/)
        expect(sha256File(img)).to.equal(imgSha)
      }
    })

    it('cp onto the image, by its name, a hard link or /dev/stdout, is refused and the image is unchanged; a symlink to it is replaced', () => {
      fs.linkSync(img, path.join(dir, 'hard'))
      for (const target of [img, path.join(dir, 'hard')]) {
        const r = prism(['cp', '-i', img, 'root:/f', target])
        expect(r.status, target).to.equal(1)
        expect(r.stderr).to.match(/^prism: cannot overwrite .*: it is the image itself/)
        expect(sha256File(img)).to.equal(imgSha)
      }
      const fd = fs.openSync(img, 'a')
      try {
        const r = spawnSync(process.execPath, [BIN, 'cp', '-i', img, 'root:/f', '/dev/stdout'], {stdio: ['ignore', fd, 'pipe'], env: {...process.env, PRISM_NO_BACKGROUND: '1'}})
        expect(r.status).to.equal(2)
      } finally {
        fs.closeSync(fd)
      }
      expect(sha256File(img)).to.equal(imgSha)
      fs.symlinkSync('disk.img', path.join(dir, 'sym'))
      const r = prism(['cp', '-i', img, 'root:/f', path.join(dir, 'sym')])
      expect(r.status, r.stderr).to.equal(0)
      expect(fs.lstatSync(path.join(dir, 'sym')).isFile()).to.equal(true)
      expect(sha256File(img)).to.equal(imgSha)
    })

    it('cp -r whose entry lands on the image skips that entry, copies the rest, and leaves the image unchanged', () => {
      // d holds a file named disk.img: copied into the image's own directory, it would land on the image
      fs.mkdirSync(path.join(dir, 'd'))
      fs.renameSync(img, path.join(dir, 'd', 'disk.img'))
      img = path.join(dir, 'd', 'disk.img')
      const r = prism(['cp', '-r', '-i', img, 'root:/d', dir])
      expect(r.status).to.equal(1)
      expect(r.stderr.trim().split('\n')).to.have.length(1)
      expect(r.stderr).to.match(/it is the image itself/)
      expect(sha256File(img)).to.equal(imgSha)
      expect(fs.readFileSync(path.join(dir, 'd', 'other'), 'utf8')).to.equal('hello\n')
    })

    it('a command whose standard output is the image is refused before it writes', () => {
      for (const args of [['cat', 'root:/f'], ['ls', 'root:/'], ['export', 'root', '-']]) {
        const fd = fs.openSync(img, 'a')
        try {
          const r = spawnSync(process.execPath, [BIN, ...args, '-i', img], {stdio: ['ignore', fd, 'pipe'], env: {...process.env, PRISM_NO_BACKGROUND: '1'}})
          expect(r.status, args.join(' ')).to.equal(2)
          expect(r.stderr.toString()).to.match(/^prism: standard output is the image .* itself/)
        } finally {
          fs.closeSync(fd)
        }
        expect(sha256File(img)).to.equal(imgSha)
      }
    })
  })
})
