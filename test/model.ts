// A reference model of one fileset's tree, simple enough to trust: directories are maps,
// files and symlinks are objects shared by their hard links. Each operation says whether it
// succeeds, with no knowledge of inodes, blocks or directories' on-disk form.
import {createHash} from 'node:crypto'

/** What any object carries besides its content: owner and extended attributes (absent: root's, none). */
export interface Meta {
  uid?: number
  gid?: number
  xattrs?: Map<string, string>
}
export type MObj = ({kind: 'file', data: Buffer, perm: number} | {kind: 'symlink', target: string} | {kind: 'special', type: 'fifo' | 'chardev', perm: number}) & Meta
export type MNode = ({kind: 'dir', perm: number, children: Map<string, MNode>} & Meta) | {kind: 'obj', obj: MObj}

export function newDir(perm = 0o755): MNode & {kind: 'dir'} {
  return {kind: 'dir', perm, children: new Map()}
}

/** An independent copy of an object (what cp makes, or a clone's own copy of a hard-linked file). */
export function dupObj(o: MObj): MObj {
  const meta = {uid: o.uid, gid: o.gid, xattrs: o.xattrs && new Map(o.xattrs)}
  if (o.kind === 'file') return {kind: 'file', data: Buffer.from(o.data), perm: o.perm, ...meta}
  if (o.kind === 'symlink') return {kind: 'symlink', target: o.target, ...meta}
  return {kind: 'special', type: o.type, perm: o.perm, ...meta}
}

/** A directory like `d` (mode, owner, attributes) holding `children`. */
function dirLike(d: MNode & {kind: 'dir'}, children: Map<string, MNode>): MNode & {kind: 'dir'} {
  return {kind: 'dir', perm: d.perm, children, uid: d.uid, gid: d.gid, xattrs: d.xattrs && new Map(d.xattrs)}
}

/** Owner and attributes as helpers.snapshot() shows them: nothing when root's and none. */
function metaText(m: Meta): string {
  const owner = (m.uid ?? 0) || (m.gid ?? 0) ? ` o=${m.uid ?? 0}:${m.gid ?? 0}` : ''
  const x = m.xattrs && m.xattrs.size ? ` x={${[...m.xattrs].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${k}=${v}`).join(',')}}` : ''
  return owner + x
}

function comps(p: string): string[] {
  return p.split('/').filter(Boolean)
}

/** A copy of a tree's directories that shares its files and symlinks (a source as it was). */
function freeze(n: MNode): MNode {
  return n.kind === 'dir' ? dirLike(n, new Map([...n.children].map(([k, v]) => [k, freeze(v)]))) : n
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
    else if (n.obj.kind !== 'symlink') n.obj.perm = perm
    return true
  }

  /** The object or directory at p itself (a symlink not followed). */
  private target(p: string): Meta | null {
    const n = this.get(p)
    return !n ? null : n.kind === 'dir' ? n : n.obj
  }

  /** chown -h: any object, a symlink itself. */
  chown(p: string, uid: number, gid: number): boolean {
    const t = this.target(p)
    if (!t) return false
    t.uid = uid
    t.gid = gid
    return true
  }

  /** setxattr without following: user.* only on files and directories, as Linux. */
  setXattr(p: string, name: string, value: string): boolean {
    const n = this.get(p)
    const t = this.target(p)
    if (!n || !t) return false
    if (name.startsWith('user.') && n.kind === 'obj' && n.obj.kind !== 'file') return false
    t.xattrs ??= new Map()
    t.xattrs.set(name, value)
    return true
  }

  removeXattr(p: string, name: string): boolean {
    const t = this.target(p)
    if (!t?.xattrs?.has(name)) return false
    t.xattrs.delete(name)
    return true
  }

  /** mknod of a FIFO or character device at a free name. */
  mknod(p: string, type: 'fifo' | 'chardev'): boolean {
    const par = this.parent(p)
    if (!par || par.dir.children.has(par.name)) return false
    par.dir.children.set(par.name, {kind: 'obj', obj: {kind: 'special', type, perm: 0o644}})
    return true
  }

  /** touch -h: sets times of what is there (not modelled), or makes an empty file. */
  touch(p: string): boolean {
    if (this.get(p)) return true
    const par = this.parent(p)
    if (!par) return false
    par.dir.children.set(par.name, {kind: 'obj', obj: {kind: 'file', data: Buffer.alloc(0), perm: 0o644}})
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
    return Model.copyTree(this, a, this, b, {})
  }

  /**
   * cp [-r] [-T] from `sm` (this model, or another fileset's) to `dm`, as GNU cp: into b if b
   * is a directory (unless T); a directory merges into a directory and never replaces
   * anything else; a non-directory replaces a non-directory, never a directory; each refused
   * entry makes the copy fail while the rest is copied. Within one fileset a directory is not
   * copied into itself, and a file onto itself, at any depth, fails (the same file); models of
   * two filesets share no object. Returns success.
   */
  static copyTree(sm: Model, a: string, dm: Model, b: string, opts: {r?: boolean, T?: boolean}): boolean {
    const n = sm.get(a)
    if (!n) return false
    if (n.kind === 'dir' && !opts.r) return false
    const tb = dm.get(b)
    const target = !opts.T && tb && tb.kind === 'dir' ? `${b}/${comps(a).pop()}` : b
    const par = dm.parent(target)
    if (!par) return false
    const ex = par.dir.children.get(par.name)
    if (sm === dm) {
      const na = '/' + comps(a).join('/')
      const nt = '/' + comps(target).join('/')
      if (n.kind === 'dir' && (nt === na || nt.startsWith(na + '/'))) return false
    }
    // Decisions are made against the tree as it was: the copy is staged, then published.
    const frozen = freeze(n)
    const objs = new Map<MObj, MObj>()
    const copyObj = (o: MObj): MObj => {
      let c = objs.get(o)
      if (!c) {
        c = dupObj(o)
        objs.set(o, c)
      }
      return c
    }
    const fresh = (src: MNode): MNode => src.kind === 'dir'
      ? dirLike(src, new Map([...src.children].map(([k, v]) => [k, fresh(v)])))
      : {kind: 'obj', obj: copyObj(src.obj)}
    let ok = true
    const place = (src: MNode, dir: MNode & {kind: 'dir'}, name: string) => {
      const e = dir.children.get(name)
      if (src.kind === 'dir') {
        if (!e) dir.children.set(name, fresh(src))
        else if (e.kind === 'dir') for (const [k, v] of src.children) place(v, e, k)
        else ok = false
        return
      }
      if (e && e.kind === 'dir') { ok = false; return }
      if (e && e.kind === 'obj' && e.obj === src.obj) { ok = false; return } // cp: the same file
      dir.children.set(name, {kind: 'obj', obj: copyObj(src.obj)})
    }
    place(frozen, par.dir, par.name)
    return ok
  }

  /** mv within the fileset: into b if b is a directory, then a rename; the same file is an error (GNU mv). */
  move(a: string, b: string): boolean {
    const tb = this.get(b)
    const target = tb && tb.kind === 'dir' ? `${b}/${comps(a).pop()}` : b
    const x = this.get(a)
    const y = this.get(target)
    if (x && y && (x === y || (x.kind === 'obj' && y.kind === 'obj' && x.obj === y.obj))) return false
    return this.rename(a, target)
  }

  /** mv from `sm` to another fileset's `dm`: a copy and a removal, with rename(2)'s rules. */
  static moveBetween(sm: Model, a: string, dm: Model, b: string): boolean {
    const n = sm.get(a)
    const pa = sm.parent(a)
    if (!n || !pa) return false
    const tb = dm.get(b)
    const target = tb && tb.kind === 'dir' ? `${b}/${comps(a).pop()}` : b
    const par = dm.parent(target)
    if (!par) return false
    const t = par.dir.children.get(par.name)
    if (t) {
      if (n.kind === 'dir' && t.kind !== 'dir') return false
      if (n.kind !== 'dir' && t.kind === 'dir') return false
      if (t.kind === 'dir' && t.children.size > 0) return false
    }
    const objs = new Map<MObj, MObj>()
    const copyNode = (x: MNode): MNode => {
      if (x.kind === 'dir') return dirLike(x, new Map([...x.children].map(([k, v]) => [k, copyNode(v)])))
      let o = objs.get(x.obj)
      if (!o) {
        o = dupObj(x.obj)
        objs.set(x.obj, o)
      }
      return {kind: 'obj', obj: o}
    }
    par.dir.children.set(par.name, copyNode(n))
    pa.dir.children.delete(pa.name)
    return true
  }

  /** ln [-f]: a hard link at b; -f replaces a file or symlink there, never a directory or the same file. */
  linkForce(a: string, b: string, force: boolean): boolean {
    const n = this.get(a)
    const pb = this.parent(b)
    if (!n || n.kind === 'dir' || !pb) return false
    const e = pb.dir.children.get(pb.name)
    if (e && (!force || e.kind === 'dir' || e.obj === n.obj)) return false
    pb.dir.children.set(pb.name, {kind: 'obj', obj: n.obj})
    return true
  }

  symlink(target: string, p: string, force = false): boolean {
    const par = this.parent(p)
    if (!par) return false
    const e = par.dir.children.get(par.name)
    if (e && (!force || e.kind === 'dir')) return false
    par.dir.children.set(par.name, {kind: 'obj', obj: {kind: 'symlink', target}})
    return true
  }

  /** Deep copy: what a clone must look like (hard links preserved within the copy). */
  clone(): Model {
    const m = new Model()
    const objs = new Map<MObj, MObj>()
    const copyNode = (n: MNode): MNode => {
      if (n.kind === 'dir') return dirLike(n, new Map([...n.children].map(([k, v]) => [k, copyNode(v)])))
      let o = objs.get(n.obj)
      if (!o) {
        o = dupObj(n.obj)
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
          out[p] = `dir ${n.perm.toString(8)} nlink=${2 + subdirs}${metaText(n)}`
          walk(n, p)
        } else if (n.obj.kind === 'symlink') {
          out[p] = `symlink -> ${n.obj.target}${metaText(n.obj)}`
        } else if (n.obj.kind === 'special') {
          out[p] = `${n.obj.type} ${n.obj.perm.toString(8)} nlink=${links.get(n.obj)}${metaText(n.obj)}`
        } else {
          const h = createHash('sha256').update(n.obj.data).digest('hex').slice(0, 16)
          out[p] = `file ${n.obj.perm.toString(8)} size=${n.obj.data.length} nlink=${links.get(n.obj)} ${h}${metaText(n.obj)}`
        }
      }
    }
    walk(this.root, '')
    return out
  }
}

/**
 * Whether exclude patterns leave out the entry at `path` (components; its directories are
 * kept), written from .gitignore's rules for the model, not from src/fs/match.ts: the last
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
