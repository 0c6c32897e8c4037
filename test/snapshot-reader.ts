// A reader of a snapshot in a process of its own (test/snapshot.test.ts): opens the image as
// the CLI does once a server has taken a snapshot for it (the pre-image log under the key
// src/device/snapshot.ts reads), and prints every fileset's tree as JSON.
import fs from 'node:fs'
import {Volume} from '../src/fs/volume.js'
import {dumpAll} from './snapshot-dump.js'

const [image, log] = process.argv.slice(2)
const st = fs.statSync(image, {bigint: true})
;(globalThis as Record<symbol, unknown>)[Symbol.for('prism.snapshot')] = {dev: st.dev, ino: st.ino, logFd: fs.openSync(log, 'r'), alive: () => true}
const vol = Volume.open(image, {write: false})
process.stdout.write(JSON.stringify(dumpAll(vol)))
vol.close()
