// A minimal WebAssembly binary writer: just enough to emit the dirty-bitmap and page-digest kernels from
// TypeScript, so no assembler joins the toolchain. Opcodes from the WebAssembly core and
// fixed-width SIMD specifications.

/** Unsigned LEB128. */
export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

const name = (s: string): number[] => [...uleb(s.length), ...new TextEncoder().encode(s)];
const section = (id: number, content: number[]): number[] => [id, ...uleb(content.length), ...content];
const vector = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];

export const I32 = 0x7f;
export const I64 = 0x7e;
export const V128 = 0x7b;

/** Instruction encoders for the subset the kernels use. */
export const op = {
  localGet: (i: number) => [0x20, ...uleb(i)],
  localSet: (i: number) => [0x21, ...uleb(i)],
  localTee: (i: number) => [0x22, ...uleb(i)],
  i32Const: (v: number) => [0x41, ...sleb(v)],
  i32Add: [0x6a],
  i32Sub: [0x6b],
  i32LtU: [0x49],
  i32GeU: [0x4f],
  i32GtU: [0x4b],
  select: [0x1b],
  i32Eqz: [0x45],
  i32Mul: [0x6c],
  i32Xor: [0x73],
  i32Shl: [0x74],
  i32ShrU: [0x76],
  i32Rotl: [0x77],
  i32Store: (offset: number) => [0x36, 2, ...uleb(offset)],
  i32And: [0x71],
  i32Or: [0x72],
  i32WrapI64: [0xa7],
  i64Load: (offset: number) => [0x29, 3, ...uleb(offset)],
  /** i64.const of a value that fits in an i32 (sign-extended). */
  i64Const: (v: number) => [0x42, ...sleb(v)],
  i64ExtendI32U: [0xad],
  i64Add: [0x7c],
  i64Sub: [0x7d],
  i64And: [0x83],
  i64Shl: [0x86],
  i64Ctz: [0x7a],
  i64Popcnt: [0x7b],
  i64Eqz: [0x50],
  i64Ne: [0x52],
  i64Eq: [0x51],
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  if: [0x04, 0x40],
  else: [0x05],
  end: [0x0b],
  br: (depth: number) => [0x0c, ...uleb(depth)],
  brIf: (depth: number) => [0x0d, ...uleb(depth)],
  return: [0x0f],
  // SIMD (prefix 0xfd)
  v128Load: (offset: number) => [0xfd, ...uleb(0x00), 4, ...uleb(offset)],
  v128Store: (offset: number) => [0xfd, ...uleb(0x0b), 4, ...uleb(offset)],
  v128Zero: [0xfd, ...uleb(0x0c), ...new Array(16).fill(0)],
  v128Or: [0xfd, ...uleb(0x50)],
  v128AndNot: [0xfd, ...uleb(0x4f)],
  v128AnyTrue: [0xfd, ...uleb(0x53)],
  i8x16Popcnt: [0xfd, ...uleb(0x62)],
  i8x16Add: [0xfd, ...uleb(0x6e)],
  i16x8ExtaddPairwiseI8x16U: [0xfd, ...uleb(0x7d)],
  i32x4ExtaddPairwiseI16x8U: [0xfd, ...uleb(0x7f)],
  i32x4Add: [0xfd, ...uleb(0xae)],
  i32x4ExtractLane: (lane: number) => [0xfd, ...uleb(0x1b), lane],
  i32x4Splat: [0xfd, ...uleb(0x11)],
  i32x4Shl: [0xfd, ...uleb(0xab)],
  i32x4ShrU: [0xfd, ...uleb(0xad)],
  i32x4Mul: [0xfd, ...uleb(0xb5)],
  /** v128.const of four i32 lanes (little-endian, lane 0 first). */
  v128ConstI32x4: (lanes: readonly number[]) => [0xfd, ...uleb(0x0c), ...lanes.flatMap((v) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff])],
} as const;

/** Signed LEB128 (i32 constants). */
function sleb(v: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = v & 0x7f;
    v >>= 7;
    if ((v === 0 && !(byte & 0x40)) || (v === -1 && byte & 0x40)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

/** A function of the module: its signature, extra locals and body (without the final `end`). */
export interface WasmFunction {
  readonly name: string;
  readonly params: readonly number[];
  readonly results: readonly number[];
  /** Extra locals after the params, one type each. */
  readonly locals: readonly number[];
  readonly body: readonly number[];
}

/** Encode a module that imports its memory as `env.memory` and exports `functions`. */
export function encodeModule(functions: readonly WasmFunction[]): Uint8Array {
  const types = functions.map((f) => [0x60, ...vector(f.params.map((t) => [t])), ...vector(f.results.map((t) => [t]))]);
  const imports = [[...name('env'), ...name('memory'), 0x02, 0x00, ...uleb(1)]];
  const funcs = functions.map((_, i) => uleb(i));
  const exports = functions.map((f, i) => [...name(f.name), 0x00, ...uleb(i)]);
  const code = functions.map((f) => {
    const locals = vector(f.locals.map((t) => [1, t]));
    const body = [...locals, ...f.body, ...op.end];
    return [...uleb(body.length), ...body];
  });
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vector(types)),
    ...section(2, vector(imports)),
    ...section(3, vector(funcs)),
    ...section(7, vector(exports)),
    ...section(10, vector(code)),
  ]);
}
