// The other mount and FUSE tests, two files at a time (test/mount-groups.cjs).
'use strict'
const {ALONE, MOUNT_TESTS} = require('./mount-groups.cjs')
module.exports = {
  'node-option': ['import=tsx'],
  spec: MOUNT_TESTS,
  ignore: ALONE,
  parallel: true,
  jobs: 2,
  timeout: 120000,
  reporter: 'spec',
}
