// Which mount and FUSE tests may share the machine with another test file (npm run test:run).
// The files below run one at a time, alone (test/serial.mocharc.cjs): they assert how fast a
// mount answers while a command works on it (a probe's p99 and longest call), or, for
// mount-peercred, open the servers' shared runtime directory (/run/prism) to another user,
// which any server starting meanwhile closes again. Every other mount-* and fuse-* file runs two at
// a time (test/mount-parallel.mocharc.cjs), each with its own image, mount point and server.
// A new file that measures the mount's answers, or changes what all servers share, goes here.
'use strict'
const ALONE = [
  'test/mount-cpin.test.ts',
  'test/mount-import.test.ts',
  'test/mount-peercred.test.ts',
  'test/mount-sattr.test.ts',
  'test/mount-scopy.test.ts',
  'test/mount-sdel.test.ts',
  'test/mount-slicedclone.test.ts',
  'test/mount-slices.test.ts',
  'test/mount-snapshot.test.ts',
  'test/mount-sshort.test.ts',
]
const MOUNT_TESTS = ['test/mount-*.test.ts', 'test/fuse-*.test.ts']
module.exports = {ALONE, MOUNT_TESTS}
