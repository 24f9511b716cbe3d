// The paths SimHost serves: device nodes under /dev and the sysfs entries VMMs read
// (iommu_group links, vfio-dev directories), resolved with Linux's symlink rules.

import { InvariantError } from '@vmmkit/core';
import { fail } from '../kernel/sim-errno.js';
import type { SimFile } from '../kernel/sim-file.js';

type Node =
  | { readonly type: 'dir'; readonly children: Map<string, Node> }
  | { readonly type: 'link'; readonly target: string }
  | { readonly type: 'chr'; readonly open: (flags: number) => SimFile }
  | { readonly type: 'attr'; readonly content: () => string };

/** A node a path resolves to. */
export type SimFsNode = Node;

const MAX_LINKS = 40; // Linux's MAXSYMLINKS

export class SimFs {
  readonly #root: Node = { type: 'dir', children: new Map() };

  /** Create a directory and its parents. */
  mkdir(path: string): void {
    this.#dirAt(path, true);
  }

  /** A symlink at `path` pointing to `target` (relative to the link's directory, or absolute). */
  link(path: string, target: string): void {
    this.#add(path, { type: 'link', target });
  }

  /** A character device whose open creates a file. */
  chr(path: string, open: (flags: number) => SimFile): void {
    this.#add(path, { type: 'chr', open });
  }

  /** A read-only attribute file (sysfs), its content computed at read time. */
  attr(path: string, content: () => string): void {
    this.#add(path, { type: 'attr', content });
  }

  /** Resolve a path, following links (the last one too unless `noFollow`). */
  lookup(path: string, noFollow = false): Node {
    return this.#resolve(path, noFollow).node;
  }

  readlink(path: string): string {
    const node = this.lookup(path, true);
    if (node.type !== 'link') fail('EINVAL', `${path} is not a symlink`);
    return node.target;
  }

  readdir(path: string): string[] {
    const node = this.lookup(path);
    if (node.type !== 'dir') fail('ENOTDIR');
    return [...node.children.keys()].sort();
  }

  exists(path: string): boolean {
    try {
      this.lookup(path);
      return true;
    } catch {
      return false;
    }
  }

  #add(path: string, node: Node): void {
    const parts = split(path);
    const name = parts.pop()!;
    const dir = this.#dirAt('/' + parts.join('/'), true);
    if (dir.children.has(name)) throw new InvariantError(`SimFs: ${path} exists`);
    dir.children.set(name, node);
  }

  #dirAt(path: string, create: boolean): Extract<Node, { type: 'dir' }> {
    let dir = this.#root as Extract<Node, { type: 'dir' }>;
    for (const part of split(path)) {
      let next = dir.children.get(part);
      if (!next && create) {
        next = { type: 'dir', children: new Map() };
        dir.children.set(part, next);
      }
      if (!next || next.type !== 'dir') throw new InvariantError(`SimFs: ${path} is not a directory`);
      dir = next;
    }
    return dir;
  }

  #resolve(path: string, noFollow: boolean, depth = 0): { node: Node; path: string[] } {
    if (!path.startsWith('/')) fail('ENOENT', `relative path '${path}'`);
    const parts = split(path);
    let node: Node = this.#root;
    const at: string[] = [];
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!;
      if (node.type !== 'dir') fail('ENOTDIR', `${'/' + at.join('/')} is not a directory`);
      if (part === '..') {
        at.pop();
        node = this.#resolve('/' + at.join('/'), false, depth).node;
        continue;
      }
      const child = node.children.get(part);
      if (!child) fail('ENOENT', `no ${'/' + [...at, part].join('/')}`);
      const last = i === parts.length - 1;
      if (child.type === 'link' && !(last && noFollow)) {
        if (depth >= MAX_LINKS) fail('ELOOP');
        const target = child.target.startsWith('/') ? child.target : '/' + [...at, child.target].join('/');
        const resolved = this.#resolve(target, false, depth + 1);
        node = resolved.node;
        at.splice(0, at.length, ...resolved.path);
        continue;
      }
      node = child;
      at.push(part);
    }
    return { node, path: at };
  }
}

function split(path: string): string[] {
  return path.split('/').filter((p) => p !== '' && p !== '.');
}
