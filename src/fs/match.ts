// Exclude patterns of selective cloning (--exclude, --exclude-from), shared by synchronous
// cloning, by the check an asynchronous clone makes before it returns, and by the expansion
// of asynchronous and lazy clones. Pure: paths in, decisions out; no I/O, no image access.
//
// The rules are .gitignore's (README "prism clone", docs/FORMAT.md §8.5), matched with
// picomatch: a pattern without a slash matches a name at any depth; a pattern with a slash
// (other than a trailing one) is anchored at the clone's root, a leading '/' optional; '**'
// spans zero or more directories; a trailing '/' matches directories only; '{a,b}' (braces,
// picomatch's addition), '*', '?', '[...]' as usual; '!' re-includes what an earlier pattern
// excluded, the last matching pattern deciding, except below an excluded directory (the walk
// never enters one). Clones made by builds before these rules keep their own meaning
// (legacyExcludeMatcher): never reinterpret a stored pattern.
import {createRequire} from 'node:module'
import {fail} from '../errors.js'
import {nameShown} from '../format/name.js'

// picomatch is loaded on first use: most commands never match a pattern, and loading it
// is a noticeable part of a fast command's start-up (an async clone takes ~0.1 s in all).
const require = createRequire(import.meta.url)
let picomatchFn: typeof import('picomatch') | null = null
type Test = (s: string) => boolean
const pm = (): typeof import('picomatch') => (picomatchFn ??= require('picomatch') as typeof import('picomatch'))
const picomatch = (pattern: string, opts: {dot: boolean}): Test => pm()(pattern, opts)
// A pattern matches by what it means, and only so: its regular expression is used as it is,
// for picomatch's matcher also takes a name equal to the pattern's text, and without
// literalBrackets: false its expression for '[x]' also matches the text '[x]' (either way a
// directory named '[x]' was left out, which git keeps); and with the 's' flag, so that '*',
// '**' and '?' span any byte of a name but '/', a newline included ('**/secret' missed
// 'a<newline>b/secret' without it).
const PM = {dot: true, noextglob: true, nonegate: true, literalBrackets: false, flags: 's'}
const regexOf = (pattern: string): RegExp => pm().makeRe(pattern, PM)
const testOf = (re: RegExp): Test => (s) => re.test(s)

/** Which meaning stored patterns have: 'gitignore' (this build), 'legacy' (clone-state version 1). */
export type ExcludeRules = 'gitignore' | 'legacy'

export interface ExcludeMatcher {
  /**
   * Decides one entry whose parent directories are not excluded: the index of the pattern
   * that excludes `path` ('/a/b', relative to the clone's top), or -1 when it is kept (no
   * pattern matches, or the last one that matches is a negation).
   */
  test(path: string, isDir: boolean): number
  /** The patterns that matched no path tested so far (as given). */
  unmatched(): string[]
  /**
   * False when no pattern still unmatched can match anything below directory `path` ('' for
   * the top): a walk that only looks for unmatched patterns need not enter it.
   */
  mayMatchBelow(path: string): boolean
}

interface Rule {
  negate: boolean
  dirOnly: boolean
  anchored: boolean
  /** on the name (unanchored) or on the path without its leading '/' (anchored) */
  re: Test
  regex: RegExp
  /** per path component, for mayMatchBelow; '**' spans any; null when the pattern cannot be split */
  segs: Array<Test | '**'> | null
}

/**
 * Splits a gitignore pattern at its slashes (outside '[...]'; a slash inside braces leaves
 * it unsplittable) and rewrites what picomatch reads otherwise than git: '[!' is '[^', and
 * '(', ')', '|' are plain characters (picomatch would take them as a regular-expression group).
 */
function translate(p: string): {segments: string[], splittable: boolean, slash: boolean} {
  const segments: string[] = []
  let cur = ''
  let braces = 0
  let splittable = true
  let slash = false
  for (let i = 0; i < p.length; i++) {
    const c = p[i]
    if (c === '\\' && i + 1 < p.length) { cur += c + p[++i]; continue }
    if (c === '[') {
      const close = bracketEnd(p, i)
      if (close > 0) {
        let body = p.slice(i + 1, close)
        if (body.startsWith('!')) body = '^' + body.slice(1)
        if (body.includes('/')) splittable = false
        cur += '[' + body + ']'
        i = close
        continue
      }
      cur += '\\['
      continue
    }
    if (c === '(' || c === ')' || c === '|') { cur += '\\' + c; continue }
    if (c === '{') braces++
    else if (c === '}' && braces > 0) braces--
    if (c === '/') {
      slash = true
      if (braces > 0) { splittable = false; cur += c; continue }
      segments.push(cur)
      cur = ''
      continue
    }
    cur += c
  }
  segments.push(cur)
  return {segments, splittable, slash}
}

/** Index of the ']' closing the bracket expression opened at `i`, or -1. */
function bracketEnd(p: string, i: number): number {
  let j = i + 1
  if (p[j] === '!' || p[j] === '^') j++
  if (p[j] === ']') j++ // a ']' first is a member
  for (; j < p.length; j++) {
    if (p[j] === '\\') { j++; continue }
    if (p[j] === '[' && p[j + 1] === ':') {
      const end = p.indexOf(':]', j + 2)
      if (end > 0) { j = end + 1; continue }
    }
    if (p[j] === ']') return j
  }
  return -1
}

/**
 * A pattern as a message shows it: control characters escaped (one line stays one line) and,
 * past 200 characters, cut with its length said (a 64 KiB pattern is not repeated whole).
 */
export function patternShown(p: string): string {
  const s = nameShown(p)
  return s.length > 200 ? `${s.slice(0, 160)}... (${p.length} characters)` : s
}

function compile(given: string): Rule {
  let p = given
  const bad = (why: string): never => fail('EUSAGE', `--exclude '${patternShown(given)}': ${why}`)
  const negate = p.startsWith('!')
  if (negate) p = p.slice(1)
  const dirOnly = p.endsWith('/') && !p.endsWith('\\/')
  if (dirOnly) p = p.replace(/\/+$/, '')
  if (p === '') bad(dirOnly ? "names the clone's top itself, which cannot be left out" : negate ? "'!' needs a pattern after it" : 'empty pattern')
  const t = translate(p)
  const anchored = t.slash
  let segs = t.segments
  if (anchored) {
    while (segs.length > 1 && segs[0] === '') segs = segs.slice(1) // the leading '/' (or several)
    if (segs.some((s) => s === '')) bad("has an empty path component ('//')")
  }
  // A trailing '/**' matches what is inside, not the directory itself: as git, the '/' must
  // be followed by something (picomatch would also match 'a' with 'a/**').
  if (anchored && segs[segs.length - 1] === '**') segs = [...segs, '*']
  let regex: RegExp
  try {
    regex = regexOf(segs.join('/'))
  } catch (e) {
    return bad(`not a valid pattern (${(e as Error).message})`)
  }
  let split: Array<Test | '**'> | null = null
  if (anchored && t.splittable) split = segs.map((s) => (s === '**' ? '**' : testOf(regexOf(s))))
  return {negate, dirOnly, anchored, regex, re: testOf(regex), segs: split}
}

function ruleMatches(r: Rule, rel: string, name: string, isDir: boolean): boolean {
  if (r.dirOnly && !isDir) return false
  return r.re(r.anchored ? rel : name)
}

/** Can rule r match something below directory `dirs` (its components)? */
function below(r: Rule, dirs: string[]): boolean {
  if (!r.anchored || !r.segs) return true
  const s = r.segs
  for (let i = 0; i < dirs.length; i++) {
    if (i >= s.length) return false
    const seg = s[i]
    if (seg === '**') return true
    if (!seg(dirs[i])) return false
  }
  return dirs.length < s.length
}

/** Compiles exclude patterns (refusing a malformed one with a usage error). */
export function excludeMatcher(patterns: string[], rules: ExcludeRules = 'gitignore'): ExcludeMatcher {
  if (rules === 'legacy') return legacyExcludeMatcher(patterns)
  const compiled = patterns.map(compile)
  const hit = new Array<boolean>(patterns.length).fill(false)
  let left = patterns.length
  const mark = (i: number) => { if (!hit[i]) { hit[i] = true; left-- } }
  // Most entries match no pattern: one expression made of all of them says so in one test
  // (3,000 patterns over 51,000 names took two minutes one pattern at a time). Only an entry
  // that some pattern matches is decided pattern by pattern, the last one deciding.
  const anyOf = (rs: Rule[]): RegExp | null => (rs.length === 0 ? null : new RegExp(rs.map((r) => `(?:${r.regex.source})`).join('|'), 's'))
  const anyName = anyOf(compiled.filter((r) => !r.anchored))
  const anyPath = anyOf(compiled.filter((r) => r.anchored))
  return {
    test(path: string, isDir: boolean): number {
      const rel = path.startsWith('/') ? path.slice(1) : path
      const name = rel.slice(rel.lastIndexOf('/') + 1)
      if (!anyName?.test(name) && !anyPath?.test(rel)) return -1
      let decider = -1
      for (let i = compiled.length - 1; i >= 0; i--) {
        if (ruleMatches(compiled[i], rel, name, isDir)) { decider = i; break }
      }
      if (decider < 0) return -1
      mark(decider)
      // Patterns a later one overrides still matched: they are not "matched nothing".
      if (left > 0) for (let i = 0; i < decider; i++) if (!hit[i] && ruleMatches(compiled[i], rel, name, isDir)) mark(i)
      return compiled[decider].negate ? -1 : decider
    },
    unmatched: () => patterns.filter((_, i) => !hit[i]),
    mayMatchBelow(path: string): boolean {
      if (left === 0) return false
      const dirs = path.split('/').filter(Boolean)
      return compiled.some((r, i) => !hit[i] && below(r, dirs))
    },
  }
}

/**
 * Whether `path` is left out of a clone, its directories included: excluded itself or below
 * an excluded directory (what the walks do, for one path; tests compare it with git).
 */
export function isExcluded(m: ExcludeMatcher, path: string, isDir: boolean): boolean {
  const parts = path.split('/').filter(Boolean)
  for (let i = 1; i < parts.length; i++) if (m.test('/' + parts.slice(0, i).join('/'), true) >= 0) return true
  return m.test('/' + parts.join('/'), isDir) >= 0
}

/**
 * The meaning patterns had before the .gitignore rules, kept for clones still expanding that
 * an older build made (clone-state version 1, docs/FORMAT.md §8.5): '/x' is a picomatch glob
 * on the whole path, anything else is '/**\/x' (which misses top-level names); a trailing '/'
 * is ignored; no negation.
 */
export function legacyExcludeMatcher(patterns: string[]): ExcludeMatcher {
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
    mayMatchBelow: () => hit.includes(false),
  }
}

/**
 * Reads an --exclude-from file as git reads a .gitignore: one pattern a line; blank lines
 * and lines starting with '#' are skipped ('\#' for a pattern starting with '#'); trailing
 * spaces are dropped unless escaped ('\ '); a CR before the newline and a UTF-8 byte-order
 * mark are dropped.
 */
export function parseExcludeFile(text: string): string[] {
  const out: string[] = []
  for (let line of text.replace(/^\uFEFF/, '').split('\n')) {
    line = line.replace(/\r$/, '')
    if (line.startsWith('#')) continue
    // Trailing spaces go, except one escaped with a backslash (itself not escaped).
    let end = line.length
    while (end > 0 && line[end - 1] === ' ') {
      let bs = 0
      for (let k = end - 2; k >= 0 && line[k] === '\\'; k--) bs++
      if (bs % 2 === 1) break
      end--
    }
    line = line.slice(0, end)
    if (line !== '') out.push(line)
  }
  return out
}
