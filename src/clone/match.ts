// Exclude patterns of selective cloning (--exclude, --exclude-from), shared by synchronous
// cloning and by the expansion of asynchronous and lazy clones.
import {createRequire} from 'node:module'

// picomatch is loaded on first use: most commands never match a pattern, and loading it
// is a noticeable part of a fast command's start-up (an async clone takes ~0.1 s in all).
const require = createRequire(import.meta.url)
let picomatchFn: typeof import('picomatch') | null = null
const picomatch = (pattern: string, opts: {dot: boolean}) => (picomatchFn ??= require('picomatch') as typeof import('picomatch'))(pattern, opts)

/** Compiles exclude patterns: '/x' is anchored at the clone's root, 'x' matches at any depth. */
export function excludeMatcher(patterns: string[]): {test: (path: string) => number, unmatched: () => string[]} {
  const hit = new Array<boolean>(patterns.length).fill(false)
  const tests = patterns.map((p) => {
    const anchored = p.startsWith('/')
    const pat = anchored ? p.replace(/\/+$/, '') || '/' : '**/' + p.replace(/\/+$/, '')
    return picomatch(anchored ? pat : '/' + pat, {dot: true})
  })
  return {
    test(path: string): number {
      for (let i = 0; i < tests.length; i++) {
        if (tests[i](path)) {
          hit[i] = true
          return i
        }
      }
      return -1
    },
    unmatched: () => patterns.filter((_, i) => !hit[i]),
  }
}

/** Reads an --exclude-from file: one pattern a line, '#' starts a comment. */
export function parseExcludeFile(text: string): string[] {
  return text.split('\n').map((l) => l.replace(/#.*$/, '').trim()).filter(Boolean)
}

