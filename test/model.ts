// A reference model of one fileset's tree, simple enough to trust: directories are maps,
// files and symlinks are objects shared by their hard links. Each operation says whether it
// succeeds, with no knowledge of inodes, blocks or directories' on-disk form.
import {createHash} from 'node:crypto'

export type MObj = {kind: 'file', data: Buffer, perm: number} | {kind: 'symlink', target: string}
export type MNode = {kind: 'dir', perm: number, children: Map<string, MNode>} | {kind: 'obj', obj: MObj}

export function newDir(perm = 0o755): MNode & {kind: 'dir'} {
  return {kind: 'dir', perm, children: new Map()}
}

function comps(p: string): string[] {
  return p.split('/').filter(Boolean)
}

export class Model {
  root = newDir()

  get(p: string): MNode | null {
    let cur: MNode = this.root
    for (const c of comps(p)) {
      if (cur.kind !== 'dir') return null
      const next = cur.children.get(c)
      if (!next) return null
      cur = next
    }
    return cur
  }

  parent(p: string): {dir: MNode & {kind: 'dir'}, name: string} | null {
    const cs = comps(p)
    if (cs.length === 0) return null
    const d = this.get('/' + cs.slice(0, -1).join('/'))
    if (!d || d.kind !== 'dir') return null
    return {dir: d, name: cs[cs.length - 1]}
  }

  mkdir(p: string): boolean {
    const par = this.parent(p)
    if (!par || par.dir.children.has(par.name)) return false
    par.dir.children.set(par.name, newDir())
    return true
  }

  /** writeFile/append: follows nothing; a symlink or directory at p fails. */
  write(p: string, data: Buffer, append: boolean): boolean {
    const par = this.parent(p)
    if (!par) return false
    const n = par.dir.children.get(par.name)
    if (!n) {
      par.dir.children.set(par.name, {kind: 'obj', obj: {kind: 'file', data: Buffer.from(data), perm: 0o644}})
      return true
    }
    if (n.kind !== 'obj' || n.obj.kind !== 'file') return false
    n.obj.data = append ? Buffer.concat([n.obj.data, data]) : Buffer.from(data)
    return true
  }

  /** pwrite at `off`, creating the file (zeros before `off`) if absent; a symlink or directory at p fails. */
  pwrite(p: string, off: number, data: Buffer): boolean {
    const par = this.parent(p)
    if (!par) return false
    let n = par.dir.children.get(par.name)
    if (!n) {
      n = {kind: 'obj', obj: {kind: 'file', data: Buffer.alloc(0), perm: 0o644}}
      par.dir.children.set(par.name, n)
    }
    if (n.kind !== 'obj' || n.obj.kind !== 'file') return false
    const old = n.obj.data
    const d = Buffer.alloc(Math.max(old.length, off + data.length))
    old.copy(d)
    data.copy(d, off)
    n.obj.data = d
    return true
  }

  truncate(p: string, size: number): boolean {
    const n = this.get(p)
    if (!n || n.kind !== 'obj' || n.obj.kind !== 'file') return false
    const d = Buffer.alloc(size)
    n.obj.data.copy(d, 0, 0, Math.min(size, n.obj.data.length))
    n.obj.data = d
    return true
  }

  chmod(p: string, perm: number): boolean {
    const n = this.get(p)
    if (!n || (n.kind === 'obj' && n.obj.kind === 'symlink')) return false
    if (n.kind === 'dir') n.perm = perm
    else if (n.obj.kind === 'file') n.obj.perm = perm
    return true
  }

  unlink(p: string): boolean {
    const par = this.parent(p)
    const n = par?.dir.children.get(par.name)
    if (!par || !n || n.kind === 'dir') return false
    par.dir.children.delete(par.name)
    return true
  }

  rmr(p: string): boolean {
    const par = this.parent(p)
    if (!par || !par.dir.children.has(par.name)) return false
    par.dir.children.delete(par.name)
    return true
  }

  rename(a: string, b: string): boolean {
    const pa = this.parent(a)
    const pb = this.parent(b)
    const n = pa?.dir.children.get(pa.name)
    if (!pa || !n || !pb) return false
    const na = '/' + comps(a).join('/')
    const nb = '/' + comps(b).join('/')
    if (n.kind === 'dir' && nb.startsWith(na + '/')) return false
    const t = pb.dir.children.get(pb.name)
    if (t) {
      if (t === n || (t.kind === 'obj' && n.kind === 'obj' && t.obj === n.obj)) return true
      if (n.kind === 'dir' && t.kind !== 'dir') return false
      if (n.kind !== 'dir' && t.kind === 'dir') return false
      if (t.kind === 'dir' && t.children.size > 0) return false
    }
    pa.dir.children.delete(pa.name)
    pb.dir.children.set(pb.name, n)
    return true
  }

  link(a: string, b: string): boolean {
    const n = this.get(a)
    const pb = this.parent(b)
    if (!n || n.kind === 'dir' || !pb || pb.dir.children.has(pb.name)) return false
    pb.dir.children.set(pb.name, {kind: 'obj', obj: n.obj})
    return true
  }

  /** cp (not -r) within the fileset: a new, independent file (or symlink) at b. */
  cp(a: string, b: string): boolean {
    const n = this.get(a)
    if (!n || n.kind === 'dir') return false
    const tb = this.get(b)
    const target = tb && tb.kind === 'dir' ? `${b}/${comps(a).pop()}` : b
    const par = this.parent(target)
    if (!par) return false
    const ex = par.dir.children.get(par.name)
    if (ex && ex.kind === 'dir') return false
    if (ex && ex.kind === 'obj' && ex.obj === n.obj) return true
    const o = n.obj
    par.dir.children.set(par.name, {kind: 'obj', obj: o.kind === 'file' ? {kind: 'file', data: Buffer.from(o.data), perm: o.perm} : {kind: 'symlink', target: o.target}})
    return true
  }

  symlink(target: string, p: string): boolean {
    const par = this.parent(p)
    if (!par || par.dir.children.has(par.name)) return false
    par.dir.children.set(par.name, {kind: 'obj', obj: {kind: 'symlink', target}})
    return true
  }

  /** Deep copy: what a clone must look like (hard links preserved within the copy). */
  clone(): Model {
    const m = new Model()
    const objs = new Map<MObj, MObj>()
    const copyNode = (n: MNode): MNode => {
      if (n.kind === 'dir') return {kind: 'dir', perm: n.perm, children: new Map([...n.children].map(([k, v]) => [k, copyNode(v)]))}
      let o = objs.get(n.obj)
      if (!o) {
        o = n.obj.kind === 'file' ? {kind: 'file', data: Buffer.from(n.obj.data), perm: n.obj.perm} : {kind: 'symlink', target: n.obj.target}
        objs.set(n.obj, o)
      }
      return {kind: 'obj', obj: o}
    }
    m.root = copyNode(this.root) as MNode & {kind: 'dir'}
    return m
  }

  /**
   * What `prism clone --exclude ... --replace PATH=@empty-dir|@empty-file` must produce:
   * a deep copy without the excluded paths, with each replacement made (missing parents
   * created). Returns null when a replacement cannot be made (a parent is not a directory).
   */
  /**
   * A clone leaving out what `exclude` (patterns, .gitignore's rules: modelExcludes) names,
   * with `replace` put in. `hits`, if given, receives the patterns that matched an entry.
   */
  cloneWith(exclude: string[], replace: Array<{path: string, kind: 'dir' | 'file'}>, hits?: Set<string>): Model | null {
    const m = this.clone()
    if (exclude.length) {
      const walk = (d: MNode & {kind: 'dir'}, at: string[]) => {
        for (const [name, n] of [...d.children]) {
          const p = [...at, name]
          if (modelExcludes(exclude, p, n.kind === 'dir', hits)) d.children.delete(name)
          else if (n.kind === 'dir') walk(n, p)
        }
      }
      walk(m.root, [])
    }
    for (const r of replace) {
      const cs = comps(r.path)
      let cur: MNode = m.root
      for (const c of cs.slice(0, -1)) {
        if (cur.kind !== 'dir') return null
        const found = cur.children.get(c)
        const next: MNode = found ?? newDir()
        if (!found) cur.children.set(c, next)
        cur = next
      }
      if (cur.kind !== 'dir') return null
      cur.children.set(cs[cs.length - 1], r.kind === 'dir' ? newDir() : {kind: 'obj', obj: {kind: 'file', data: Buffer.alloc(0), perm: 0o644}})
    }
    return m
  }

  /** Same shape as helpers.snapshot(): path -> description. */
  snapshot(): Record<string, string> {
    const links = new Map<MObj, number>()
    const count = (d: MNode) => {
      if (d.kind === 'dir') d.children.forEach(count)
      else links.set(d.obj, (links.get(d.obj) ?? 0) + 1)
    }
    count(this.root)
    const out: Record<string, string> = {}
    const walk = (d: MNode & {kind: 'dir'}, prefix: string) => {
      for (const [name, n] of d.children) {
        const p = prefix + '/' + name
        if (n.kind === 'dir') {
          const subdirs = [...n.children.values()].filter((c) => c.kind === 'dir').length
          out[p] = `dir ${n.perm.toString(8)} nlink=${2 + subdirs}`
          walk(n, p)
        } else if (n.obj.kind === 'symlink') {
          out[p] = `symlink -> ${n.obj.target}`
        } else {
          const h = createHash('sha256').update(n.obj.data).digest('hex').slice(0, 16)
          out[p] = `file ${n.obj.perm.toString(8)} size=${n.obj.data.length} nlink=${links.get(n.obj)} ${h}`
        }
      }
    }
    walk(this.root, '')
    return out
  }
}

/**
 * Whether exclude patterns leave out the entry at `path` (components; its directories are
 * kept), written from .gitignore's rules for the model, not from src/clone/match.ts: the last
 * pattern that matches decides ('!' keeps); a trailing '/' wants a directory; a pattern with
 * a slash elsewhere is matched component by component from the top, '**' spanning any number
 * of them (at least one when it ends the pattern); one without a slash matches the name.
 * Within a component: '*', '?', '[...]' ('!' or '^' negates) and '{a,b}' (not nested).
 */
export function modelExcludes(patterns: string[], path: string[], isDir: boolean, hits?: Set<string>): boolean {
  let decided: boolean | null = null
  for (let i = patterns.length - 1; i >= 0; i--) {
    let p = patterns[i]
    const negate = p.startsWith('!')
    if (negate) p = p.slice(1)
    const dirOnly = p.endsWith('/')
    p = p.replace(/\/+$/, '')
    if (dirOnly && !isDir) continue
    const matched = p.includes('/') ? segsMatch(p.split('/').filter(Boolean), path) : globMatch(p, path[path.length - 1])
    if (!matched) continue
    hits?.add(patterns[i])
    if (decided === null) decided = !negate
  }
  return decided ?? false
}

function segsMatch(segs: string[], path: string[]): boolean {
  if (segs.length === 0) return path.length === 0
  if (segs[0] === '**') {
    if (segs.length === 1) return path.length >= 1
    return segsMatch(segs.slice(1), path) || (path.length > 0 && segsMatch(segs, path.slice(1)))
  }
  return path.length > 0 && globMatch(segs[0], path[0]) && segsMatch(segs.slice(1), path.slice(1))
}

function globMatch(glob: string, name: string): boolean {
  const brace = /\{([^{}]*)\}/.exec(glob)
  if (brace) return brace[1].split(',').some((alt) => globMatch(glob.slice(0, brace.index) + alt + glob.slice(brace.index + brace[0].length), name))
  let re = ''
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]
    if (c === '*') re += '[^/]*'
    else if (c === '?') re += '[^/]'
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2)
      let body = glob.slice(i + 1, end)
      if (body.startsWith('!')) body = '^' + body.slice(1)
      re += `[${body}]`
      i = end
    } else re += c.replace(/[.+^${}()|\\\]\[]/g, '\\$&')
  }
  return new RegExp(`^${re}$`).test(name)
}
