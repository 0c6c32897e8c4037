// `prism cat`, `prism cp` to /dev/stdout and `prism export` to standard output grow a pipe's buffer to 1 MiB (src/sys.ts
// growPipe), never shrink a larger one, and leave anything that is not a pipe alone; the bytes
// that come out are the same every way. The reader is a python process that reads the pipe to
// its end and only then asks the pipe's size (F_GETPIPE_SZ), so that it sees what the writer
// left, whenever the writer changed it.
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {BIN, newImage, prism, tmpDir} from './helpers.js'

const MiB = 1024 * 1024

/**
 * Runs prism with stdout on a pipe that python made (grown first to `presize` bytes when
 * given), reads it to the end, and returns what came out and the pipe's size at the end.
 */
function throughPipe(args: string[], presize = 0): {status: number, sha: string, bytes: number, pipeSize: number, stderr: string, skip?: boolean} {
  const script = `
import fcntl, hashlib, json, os, subprocess, sys
F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032
r, w = os.pipe()
if ${presize}:
    try: fcntl.fcntl(w, F_SETPIPE_SZ, ${presize})
    except PermissionError:
        print(json.dumps({"skip": True})); sys.exit(0)
p = subprocess.Popen(sys.argv[1:], stdout=w, stderr=subprocess.PIPE)
os.close(w)
h, n = hashlib.sha256(), 0
while True:
    b = os.read(r, 1 << 16)
    if not b: break
    h.update(b); n += len(b)
err = p.stderr.read().decode()
rc = p.wait()
print(json.dumps({"status": rc, "sha": h.hexdigest(), "bytes": n, "pipeSize": fcntl.fcntl(r, F_GETPIPE_SZ), "stderr": err}))
`
  const r = spawnSync('python3', ['-c', script, process.execPath, BIN, ...args], {encoding: 'utf8'})
  if (r.status !== 0) throw new Error(`python failed: ${r.stderr}`)
  return JSON.parse(r.stdout)
}

describe('streams to a pipe: the pipe grows to 1 MiB, the bytes are the same', function () {
  this.timeout(120_000)
  let dir: string
  let img: string
  let data: Buffer
  before(() => {
    dir = tmpDir('prism-pipe-')
    img = newImage(dir, 64 * MiB)
    data = Buffer.alloc(3 * MiB + 123)
    for (let i = 0; i < data.length; i++) data[i] = (i * 7919) >>> 5
    const src = path.join(dir, 'src.bin')
    fs.writeFileSync(src, data)
    expect(prism(['cp', src, 'root:/f.bin', '-i', img]).status).to.equal(0)
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

  it('prism cat grows the default 64 KiB pipe to 1 MiB and writes the file exactly', () => {
    const r = throughPipe(['cat', 'root:/f.bin', '-i', img])
    expect(r.status, r.stderr).to.equal(0)
    expect(r.bytes).to.equal(data.length)
    expect(r.sha).to.equal(sha(data))
    expect(r.pipeSize).to.equal(MiB)
  })

  it('prism cp to /dev/stdout, /dev/fd/1 or /proc/self/fd/1 grows the pipe too, and writes the file exactly (a full pipe is waited out)', () => {
    for (const to of ['/dev/stdout', '/dev/fd/1', '/proc/self/fd/1']) {
      const r = throughPipe(['cp', 'root:/f.bin', to, '-i', img])
      expect(r.status, r.stderr).to.equal(0)
      expect(r.bytes, to).to.equal(data.length)
      expect(r.sha, to).to.equal(sha(data))
      expect(r.pipeSize, to).to.equal(MiB)
    }
  })

  it('prism export to standard output grows the pipe too, and the archive is whole', () => {
    const r = throughPipe(['export', 'root', '-', '-i', img])
    expect(r.status, r.stderr).to.equal(0)
    expect(r.pipeSize).to.equal(MiB)
    const file = path.join(dir, 'out.tar')
    const w = spawnSync('sh', ['-c', `"${process.execPath}" "${BIN}" export root - -i "${img}" > "${file}"`])
    expect(w.status).to.equal(0)
    expect(sha(fs.readFileSync(file))).to.equal(r.sha)
    const x = path.join(dir, 'x')
    fs.mkdirSync(x)
    expect(spawnSync('tar', ['-xf', file, '-C', x]).status).to.equal(0)
    expect(sha(fs.readFileSync(path.join(x, 'f.bin')))).to.equal(sha(data))
  })

  it('a pipe already larger than 1 MiB is not shrunk', function () {
    const r = throughPipe(['cat', 'root:/f.bin', '-i', img], 4 * MiB)
    if (r.skip) {
      // Only a process with CAP_SYS_RESOURCE may grow a pipe past pipe-max-size.
      console.log('      (skipped: this process may not make a pipe larger than pipe-max-size, so none is there to shrink)')
      this.skip()
    }
    expect(r.status, r.stderr).to.equal(0)
    expect(r.sha).to.equal(sha(data))
    expect(r.pipeSize).to.equal(4 * MiB)
  })

  it('a regular file on standard output is written as before', () => {
    const out = path.join(dir, 'cat.out')
    const r = spawnSync('sh', ['-c', `"${process.execPath}" "${BIN}" cat root:/f.bin -i "${img}" > "${out}"`])
    expect(r.status).to.equal(0)
    expect(sha(fs.readFileSync(out))).to.equal(sha(data))
  })

  it('a reader that goes away early still ends prism cat quietly with its own status', () => {
    const r = spawnSync('bash', ['-c', `"${process.execPath}" "${BIN}" cat root:/f.bin -i "${img}" | head -c 10 > /dev/null; echo "\${PIPESTATUS[0]}"`], {encoding: 'utf8'})
    expect(r.stdout.trim()).to.equal('0')
    expect(r.stderr).to.equal('')
  })
})
