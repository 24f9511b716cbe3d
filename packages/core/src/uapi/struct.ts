// A declarative codec for C structs of the Linux uAPI over little-endian bytes.
// Layouts follow the C rules for x86_64/arm64 (natural alignment, tail padding), like the
// kernel's headers; tests check every layout against the kernel's own sizes and offsets.

import { ArgumentError } from '../errors/vmm-error-base.js';

/** A C type that can be a struct member: its size, alignment and how to read and write it. */
export interface FieldType<T, In = T> {
  /** The C spelling, for descriptions (`__u32`, `struct vfio_bitmap`, `__u8[3]`). */
  readonly cType: string;
  readonly size: number;
  readonly align: number;
  read(view: DataView, offset: number): T;
  write(view: DataView, offset: number, value: In): void;
}

function primitive<T>(
  cType: string,
  size: number,
  read: (v: DataView, o: number) => T,
  write: (v: DataView, o: number, x: T) => void,
): FieldType<T> {
  return { cType, size, align: size, read, write };
}

export const u8 = primitive<number>('__u8', 1, (v, o) => v.getUint8(o), (v, o, x) => v.setUint8(o, x));
export const u16 = primitive<number>('__u16', 2, (v, o) => v.getUint16(o, true), (v, o, x) => v.setUint16(o, x, true));
export const u32 = primitive<number>('__u32', 4, (v, o) => v.getUint32(o, true), (v, o, x) => v.setUint32(o, x, true));
export const s32 = primitive<number>('__s32', 4, (v, o) => v.getInt32(o, true), (v, o, x) => v.setInt32(o, x, true));
export const u64 = primitive<bigint>('__u64', 8, (v, o) => v.getBigUint64(o, true), (v, o, x) => v.setBigUint64(o, x, true));
export const s64 = primitive<bigint>('__s64', 8, (v, o) => v.getBigInt64(o, true), (v, o, x) => v.setBigInt64(o, x, true));

/** A fixed-size array member, `T name[count]`. */
export function array<T, In>(elem: FieldType<T, In>, count: number): FieldType<T[], readonly In[]> {
  return {
    cType: `${elem.cType}[${count}]`,
    size: elem.size * count,
    align: elem.align,
    read: (v, o) => Array.from({ length: count }, (_, i) => elem.read(v, o + i * elem.size)),
    write: (v, o, xs) => {
      if (xs.length > count) throw new ArgumentError(`${xs.length} elements for ${elem.cType}[${count}]`);
      xs.forEach((x, i) => elem.write(v, o + i * elem.size, x));
    },
  };
}

/** A flexible array member, `T name[]`: no size of its own; its elements follow the struct. */
export interface FlexArray<T, In = T> {
  readonly kind: 'flex';
  readonly elem: FieldType<T, In>;
}

/** A flexible array of elements (`__s32 data[]`, `struct vfio_iova_range iova_ranges[]`). */
export function flex<T, In>(elem: FieldType<T, In>): FlexArray<T, In> {
  return { kind: 'flex', elem };
}

/** A flexible byte array (`__u8 data[]`), encoded from and decoded to a `Uint8Array`. */
export interface FlexBytes {
  readonly kind: 'flex-bytes';
  readonly elem: FieldType<number>;
}
export const flexBytes: FlexBytes = { kind: 'flex-bytes', elem: u8 };

/** A member of an anonymous union: it shares its offset with the union's other members. */
export interface UnionMember<T, In = T> {
  readonly kind: 'union-member';
  readonly type: FieldType<T, In>;
  readonly union: object;
}

/** An anonymous union, spread into a struct's members: `...union({ group_id: u32, devid: u32 })`. */
export function union<D extends Record<string, FieldType<any, any>>>(
  members: D,
): { [K in keyof D]: D[K] extends FieldType<infer T, infer In> ? UnionMember<T, In> : never } {
  const tag = {};
  const out: Record<string, UnionMember<unknown>> = {};
  for (const [name, type] of Object.entries(members)) out[name] = { kind: 'union-member', type, union: tag };
  return out as never;
}

type AnyMember = FieldType<any, any> | FlexArray<any, any> | FlexBytes | UnionMember<any, any>;
/** The members of a struct, in declaration order. */
export type StructMembers = Record<string, AnyMember>;

type IsFlex<M> = M extends FlexArray<any, any> | FlexBytes ? true : false;
type ValueOf<M> =
  M extends FieldType<infer T, any> ? T : M extends UnionMember<infer T, any> ? T : never;
type InputOf<M> =
  M extends FieldType<any, infer In> ? In
  : M extends UnionMember<any, infer In> ? In
  : M extends FlexArray<any, infer In> ? readonly In[]
  : M extends FlexBytes ? Uint8Array
  : never;

/** The element type of a struct's flexible array member (`number` for bytes). */
export type FlexElementOf<D extends StructMembers> = {
  [K in keyof D]: D[K] extends FlexArray<infer T, any> ? T : D[K] extends FlexBytes ? number : never;
}[keyof D];

/** A decoded struct: every fixed member, `bigint` for 64-bit ones. Flexible arrays are read apart. */
export type StructValue<D extends StructMembers> = {
  -readonly [K in keyof D as IsFlex<D[K]> extends true ? never : K]: ValueOf<D[K]>;
};
/** The values to encode: any subset of the members (the rest are zero), nested structs partial. */
export type StructInput<D extends StructMembers> = { [K in keyof D]?: InputOf<D[K]> };

/** Where a member sits. */
export interface MemberLayout {
  readonly offset: number;
  readonly size: number;
  readonly type: FieldType<unknown, unknown>;
}

const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;

/**
 * A C struct of the uAPI: its layout and a codec over `Uint8Array`.
 *
 * When the first member is the kernel's extensible-struct length (`argsz` or `size`, a __u32 at
 * offset 0), `encode` fills it with the encoded length unless a value is given.
 */
export class StructType<D extends StructMembers> implements FieldType<StructValue<D>, StructInput<D>> {
  readonly cType: string;
  readonly size: number;
  readonly align: number;
  /** Every fixed member's offset and size, by name. */
  readonly members: { readonly [K in keyof D]: MemberLayout };
  /** The flexible array member, if any: its name, offset and element type. */
  readonly flexible?: { readonly name: string; readonly offset: number; readonly elem: FieldType<unknown, unknown>; readonly bytes: boolean };
  readonly #lengthField?: string;

  constructor(readonly name: string, definition: D) {
    this.cType = `struct ${name}`;
    const members: Record<string, MemberLayout> = {};
    let offset = 0;
    let align = 1;
    let openUnion: { tag: object; offset: number; end: number } | undefined;
    let flexible: StructType<D>['flexible'];
    const entries = Object.entries(definition);
    entries.forEach(([memberName, m], i) => {
      if ('kind' in m && m.kind === 'union-member') {
        if (openUnion?.tag !== m.union) {
          if (openUnion) offset = openUnion.end;
          // A union is aligned to its most aligned member, not to its first.
          const unionAlign = Math.max(
            ...entries.map(([, x]) => ('kind' in x && x.kind === 'union-member' && x.union === m.union ? x.type.align : 1)),
          );
          openUnion = { tag: m.union, offset: alignUp(offset, unionAlign), end: 0 };
        }
        members[memberName] = { offset: openUnion.offset, size: m.type.size, type: m.type };
        openUnion.end = Math.max(openUnion.end, openUnion.offset + m.type.size);
        align = Math.max(align, m.type.align);
        return;
      }
      if (openUnion) { offset = openUnion.end; openUnion = undefined; }
      if ('kind' in m) {
        if (i !== entries.length - 1) throw new ArgumentError(`${name}.${memberName}: a flexible array must be last`);
        offset = alignUp(offset, m.elem.align);
        align = Math.max(align, m.elem.align);
        flexible = { name: memberName, offset, elem: m.elem, bytes: m.kind === 'flex-bytes' };
        return;
      }
      offset = alignUp(offset, m.align);
      members[memberName] = { offset, size: m.size, type: m };
      offset += m.size;
      align = Math.max(align, m.align);
    });
    if (openUnion) offset = openUnion.end;
    this.flexible = flexible;
    this.align = align;
    this.size = alignUp(offset, align);
    this.members = members as never;
    const first = entries[0]?.[0];
    if ((first === 'argsz' || first === 'size') && members[first]?.type === u32) this.#lengthField = first;
  }

  /** Encode `values` (missing members are zero) into a new buffer, flexible elements included. */
  encode(values: StructInput<D> = {}): Uint8Array {
    const flexValue = this.flexible ? (values as Record<string, unknown>)[this.flexible.name] : undefined;
    const flexLength = this.#flexByteLength(flexValue);
    const total = Math.max(this.size, (this.flexible?.offset ?? 0) + flexLength);
    const bytes = new Uint8Array(total);
    const view = new DataView(bytes.buffer);
    this.write(view, 0, values);
    if (this.#lengthField && (values as Record<string, unknown>)[this.#lengthField] === undefined) {
      view.setUint32(0, total, true);
    }
    if (this.flexible && flexValue !== undefined) this.#writeFlex(bytes, flexValue);
    return bytes;
  }

  /** Decode the fixed members of the struct at `offset` in `bytes`. */
  decode(bytes: Uint8Array, offset = 0): StructValue<D> {
    this.#check(bytes, offset, this.size);
    return this.read(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), offset);
  }

  /** Read one member of the struct at `offset` in `bytes`. */
  get<K extends keyof StructValue<D> & string>(bytes: Uint8Array, member: K, offset = 0): StructValue<D>[K] {
    const m = this.#member(member);
    this.#check(bytes, offset + m.offset, m.size);
    return m.type.read(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), offset + m.offset) as never;
  }

  /** Write one member of the struct at `offset` in `bytes`, in place. */
  set<K extends keyof StructValue<D> & string>(bytes: Uint8Array, member: K, value: InputOf<D[K]>, offset = 0): void {
    const m = this.#member(member);
    this.#check(bytes, offset + m.offset, m.size);
    m.type.write(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), offset + m.offset, value);
  }

  /** Read `count` elements of the flexible array of the struct at `offset` in `bytes`. */
  readFlex(bytes: Uint8Array, count: number, offset = 0): FlexElementOf<D>[] {
    const flexible = this.flexible;
    if (!flexible) throw new ArgumentError(`${this.cType} has no flexible array member`);
    const start = offset + flexible.offset;
    this.#check(bytes, start, count * flexible.elem.size);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return Array.from({ length: count }, (_, i) => flexible.elem.read(view, start + i * flexible.elem.size) as FlexElementOf<D>);
  }

  read(view: DataView, offset: number): StructValue<D> {
    const out: Record<string, unknown> = {};
    for (const [name, m] of Object.entries(this.members as Record<string, MemberLayout>)) {
      out[name] = m.type.read(view, offset + m.offset);
    }
    return out as StructValue<D>;
  }

  write(view: DataView, offset: number, values: StructInput<D>): void {
    const members = this.members as Record<string, MemberLayout>;
    for (const [name, value] of Object.entries(values)) {
      if (value === undefined || name === this.flexible?.name) continue;
      const m = members[name];
      if (!m) throw new ArgumentError(`${this.cType} has no member '${name}'`);
      m.type.write(view, offset + m.offset, value);
    }
  }

  #member(name: string): MemberLayout {
    const m = (this.members as Record<string, MemberLayout>)[name];
    if (!m) throw new ArgumentError(`${this.cType} has no member '${name}'`);
    return m;
  }

  #check(bytes: Uint8Array, offset: number, length: number): void {
    if (offset < 0 || offset + length > bytes.byteLength) {
      throw new ArgumentError(`${this.cType}: ${length} bytes at offset ${offset} exceed a ${bytes.byteLength}-byte buffer`);
    }
  }

  #flexByteLength(value: unknown): number {
    if (value === undefined || !this.flexible) return 0;
    if (this.flexible.bytes) return (value as Uint8Array).byteLength;
    return (value as unknown[]).length * this.flexible.elem.size;
  }

  #writeFlex(bytes: Uint8Array, value: unknown): void {
    const flexible = this.flexible!;
    if (flexible.bytes) {
      bytes.set(value as Uint8Array, flexible.offset);
      return;
    }
    const view = new DataView(bytes.buffer);
    (value as unknown[]).forEach((x, i) => flexible.elem.write(view, flexible.offset + i * flexible.elem.size, x));
  }
}

/** Declare a uAPI struct, members in header order: `defineStruct('vfio_bitmap', { pgsize: u64, ... })`. */
export function defineStruct<D extends StructMembers>(name: string, members: D): StructType<D> {
  return new StructType(name, members);
}
