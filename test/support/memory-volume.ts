/**
 * An in-memory `Volume` for the boot-configuration tests: files given by absolute path (directories are implied by
 * the paths), symbolic links followed up to 8 times as the real readers follow them, and `volumeFromDir` to load a
 * fixture tree from disk.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { VerityError } from '../../src/errors.js';
import type { DirEntry, FilesystemKind, Volume } from '../../src/fs/volume.js';
import { bytesSource, type ByteSource } from '../../src/io/source.js';

export type MemoryNode = string | Uint8Array | { symlink: string };
export type MemoryTree = Record<string, MemoryNode>;

const MAX_LINKS = 8;

function normalise(path: string): string {
  const parts: string[] = [];
  for (const p of path.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') parts.pop();
    else parts.push(p);
  }
  return `/${parts.join('/')}`;
}

export class MemoryVolume implements Volume {
  readonly kind: FilesystemKind;
  readonly uuid: string;
  readonly label: string;
  private readonly nodes = new Map<string, Uint8Array | { symlink: string }>();
  private readonly dirs = new Set<string>(['/']);
  /** Every path asked for, in order (to check what a reader looked at). */
  readonly reads: string[] = [];

  constructor(files: MemoryTree = {}, options: { kind?: FilesystemKind; uuid?: string; label?: string } = {}) {
    this.kind = options.kind ?? 'ext4';
    this.uuid = options.uuid ?? '00000000-0000-0000-0000-000000000000';
    this.label = options.label ?? '';
    for (const [path, node] of Object.entries(files)) this.add(path, node);
  }

  /** Adds (or replaces) a file, an empty directory (a path ending in `/`) or a symbolic link. */
  add(path: string, node: MemoryNode): this {
    if (path.endsWith('/')) {
      this.addDir(normalise(path));
      return this;
    }
    const p = normalise(path);
    this.nodes.set(p, typeof node === 'string' ? new TextEncoder().encode(node) : node);
    this.addDir(p.slice(0, p.lastIndexOf('/')) || '/');
    return this;
  }

  private addDir(dir: string): void {
    for (let d = dir; ; d = d.slice(0, d.lastIndexOf('/')) || '/') {
      this.dirs.add(d);
      if (d === '/') break;
    }
  }

  /** The path with every symbolic link in it followed; null past MAX_LINKS links (a loop). */
  private follow(path: string): string | null {
    let p = normalise(path);
    for (let hops = 0; hops <= MAX_LINKS; hops++) {
      const parts = p.split('/').filter(Boolean);
      let resolved = '';
      let changed = false;
      for (let i = 0; i < parts.length; i++) {
        const here = `${resolved}/${parts[i]}`;
        const node = this.nodes.get(here);
        if (node && !(node instanceof Uint8Array)) {
          const target = node.symlink.startsWith('/') ? node.symlink : `${resolved}/${node.symlink}`;
          p = normalise([target, ...parts.slice(i + 1)].join('/'));
          changed = true;
          break;
        }
        resolved = here;
      }
      if (!changed) return p;
    }
    return null;
  }

  async list(path: string): Promise<DirEntry[] | null> {
    this.reads.push(path);
    const p = this.follow(path);
    if (p === null || !this.dirs.has(p)) return null;
    const prefix = p === '/' ? '/' : `${p}/`;
    const out = new Map<string, DirEntry>();
    for (const d of this.dirs) {
      if (d !== p && d.startsWith(prefix) && !d.slice(prefix.length).includes('/')) {
        out.set(d.slice(prefix.length), { name: d.slice(prefix.length), kind: 'directory', size: 0 });
      }
    }
    for (const [f, node] of this.nodes) {
      if (f.startsWith(prefix) && !f.slice(prefix.length).includes('/')) {
        const name = f.slice(prefix.length);
        out.set(name, node instanceof Uint8Array ? { name, kind: 'file', size: node.length } : { name, kind: 'symlink', size: node.symlink.length });
      }
    }
    return [...out.values()];
  }

  private file(path: string): Uint8Array | null {
    const p = this.follow(path);
    if (p === null) throw new VerityError('E_BAD_IMAGE', `Too many symbolic links in ${path}.`, { data: { path } });
    const node = this.nodes.get(p);
    return node instanceof Uint8Array ? node : null;
  }

  async readFile(path: string, maxBytes: number): Promise<Uint8Array | null> {
    this.reads.push(path);
    const f = this.file(path);
    if (f === null) return null;
    if (f.length > maxBytes) {
      throw new VerityError('E_UNSUPPORTED', `${path} is ${f.length} bytes, more than the ${maxBytes} read.`, {
        data: { path, expected: maxBytes, actual: f.length },
      });
    }
    return f.slice();
  }

  async open(path: string): Promise<ByteSource | null> {
    this.reads.push(path);
    const f = this.file(path);
    return f === null ? null : bytesSource(f);
  }
}

/** A MemoryVolume holding the files under `dir` on disk (a fixture tree), at the same paths. */
export function volumeFromDir(dir: string, options: { kind?: FilesystemKind; uuid?: string; label?: string } = {}): MemoryVolume {
  const vol = new MemoryVolume({}, options);
  const walk = (abs: string, rel: string) => {
    for (const name of readdirSync(abs)) {
      const a = join(abs, name);
      const r = `${rel}/${name}`;
      if (statSync(a).isDirectory()) {
        vol.add(`${r}/`, '');
        walk(a, r);
      } else {
        vol.add(r, new Uint8Array(readFileSync(a)));
      }
    }
  };
  walk(dir, '');
  return vol;
}
