// Values a user mistypes are refused with one line, and the image stays as it was: base64 that
// is not whole groups of four, a quoted value without its closing quote, the owner id
// 4294967295 ((uid_t)-1, which chown(2) takes as "leave it"), a day the calendar does not have,
// and an ACL value too short for its header (which removed the ACL the file had). Found by a
// new user's trial; each was accepted.
import {expect} from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import {edit, prism, read, snapshot, tmpDir} from './helpers.js'

describe('mistyped values: one line, a documented exit, the image as it was', function () {
  this.timeout(60_000)
  let dir: string
  let img: string
  let want: Record<string, string>
  const ACL = '0x0200000001000600ffffffff02000600e803000004000400ffffffff10000600ffffffff20000400ffffffff'
  before(() => {
    dir = tmpDir()
    img = path.join(dir, 'disk.img')
    expect(prism(['mkfs', img, '--size', '64M']).status).to.equal(0)
    edit(img, (ns) => ns.writeFile('/f', Buffer.from('x')))
    expect(prism(['xattr', 'set', 'root:/f', 'system.posix_acl_access', ACL, '-i', img]).status).to.equal(0)
    want = read(img, (ns) => snapshot(ns))
    expect(want['/f']).to.include('system.posix_acl_access')
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  const cases: Array<[string[], number, RegExp]> = [
    [['xattr', 'set', 'root:/f', 'user.a', '0sAAA'], 2, /invalid base64 value/],
    [['xattr', 'set', 'root:/f', 'user.a', '"unterminated'], 2, /no closing/],
    [['xattr', 'set', 'root:/f', 'system.posix_acl_access', '0x0102'], 1, /ACL value has a bad length/],
    [['xattr', 'set', 'root:/f', 'system.posix_acl_access', '0x03000000'], 1, /ACL version 3/],
    [['chown', '4294967295', 'root:/f'], 1, /user id 4294967295 is out of range/],
    [['chown', '0:4294967295', 'root:/f'], 1, /group id 4294967295 is out of range/],
    [['touch', '-d', '2024-02-30T00:00:00Z', 'root:/f'], 2, /invalid date/],
    [['touch', '-d', '2023-02-29', 'root:/f'], 2, /invalid date/],
  ]
  for (const [args, code, re] of cases) {
    it(args.join(' '), () => {
      const r = prism([...args, '-i', img])
      expect(r.status, r.stderr).to.equal(code)
      expect(r.stderr.split('\n').filter(Boolean)).to.have.length(1)
      expect(r.stderr).to.match(/^prism: /).and.match(re)
      expect(read(img, (ns) => snapshot(ns))).to.deep.equal(want)
    })
  }

  it('a leap day is a day', () => {
    expect(prism(['touch', '-d', '2024-02-29T12:00:00Z', 'root:/f', '-i', img]).status).to.equal(0)
    expect(prism(['stat', 'root:/f', '-i', img]).stdout).to.include('2024-02-29T12:00:00.000000000Z')
  })
})
