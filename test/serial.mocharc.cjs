// The mount tests that run alone, one file at a time (test/mount-groups.cjs).
'use strict'
const {ALONE} = require('./mount-groups.cjs')
module.exports = {
  'node-option': ['import=tsx'],
  spec: ALONE,
  timeout: 120000,
  reporter: 'spec',
}
