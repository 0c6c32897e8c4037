// The latency probe of the served-image benchmarks (served-attrs, served-image, served-write):
// test/mount-cpin-probe.py, a process of its own, making calls on other files of a mount while
// a command runs, and its figures.
import {spawn} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {PYTHON} from '../test/fuse-support.js'

const PROBE = fileURLToPath(new URL('../test/mount-cpin-probe.py', import.meta.url))

/** The probe's calls and their latency in ms. */
export interface Probe {calls: number, p50: number, p99: number, max: number}

/** Runs the probe on `dir` (on a mount; `work`: a host directory for its stop file) until the function it returns is called. */
export function startProbe(dir: string, work: string): () => Promise<Probe> {
  const stopFile = path.join(work, 'stop-probe')
  fs.rmSync(stopFile, {force: true})
  const child = spawn(PYTHON, [PROBE, dir, stopFile, '3600'], {stdio: ['ignore', 'pipe', 'inherit']})
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d
  })
  const done = new Promise<void>((resolve) => child.on('close', () => resolve()))
  return async () => {
    fs.writeFileSync(stopFile, '')
    await done
    return JSON.parse(out) as Probe
  }
}
