// QEMU-style descriptions (`vfio-pci,host=0000:00:03.0,iommufd=iommufd0`) or typed objects,
// checked against the schema the object or device type declares, with errors that name the
// option and the value.

import { ConfigError } from '../errors/vmm-error.js';

/** What kind of value an option takes. */
export type OptionKind =
  | 'string'
  /** on|off (also true|false, yes|no), as QEMU booleans. */
  | 'on-off'
  /** on|off|auto, as QEMU's OnOffAuto. */
  | 'on-off-auto'
  /** A non-negative integer (decimal or 0x hex). */
  | 'uint'
  /** The id of an object of this type, e.g. `{ object: 'iommufd' }`. */
  | { readonly object: string };

/** One option of an object or device type. */
export interface OptionSpec {
  readonly kind: OptionKind;
  /** What the option does, for messages and docs. */
  readonly doc: string;
}

/** The options an object or device type accepts. `id` is always accepted. */
export type OptionSchema = Readonly<Record<string, OptionSpec>>;

/** Option values after validation: on-off as booleans, on-off-auto as strings, uint as numbers. */
export type OptionValues = Readonly<Record<string, string | number | boolean>>;

/** The value an option of kind `K` has once validated. */
export type OptionValue<K extends OptionKind> =
  K extends 'on-off' ? boolean : K extends 'on-off-auto' ? 'on' | 'off' | 'auto' : K extends 'uint' ? number : string;

/**
 * The validated options of a schema, typed option by option (each optional: given or not), and
 * `id`. Declare a schema `as const satisfies OptionSchema` to get its record typed.
 */
export type OptionsOf<S extends OptionSchema> = { readonly [K in keyof S]?: OptionValue<S[K]['kind']> } & { readonly id?: string };

/** One value of a typed description: a scalar, or an object of them (QEMU's structured properties). */
export type DescriptionValue = string | number | boolean | undefined | { readonly [key: string]: DescriptionValue };

/**
 * A description as given: a QEMU-style string (`vfio-pci,host=...`, or QEMU's JSON form
 * `{"driver":"vfio-pci","host":"..."}`), or an object of option values. A structured value
 * (`socket: { path, type }`) stands for its dotted options (`socket.path`, `socket.type`), as
 * QEMU's keyval syntax spells them on the command line.
 */
export type Description = string | Readonly<Record<string, DescriptionValue>>;

/** A parsed description: its type (object qom-type or device driver) and raw option values. */
export interface ParsedDescription {
  readonly type: string;
  readonly values: ReadonlyMap<string, string>;
  /** How to name the description in messages: `-device vfio-pci` or `-object iommufd`. */
  readonly label: string;
}

/** Parse a description. `typeKey` is where the typed form keeps the type (`driver` or `type`). */
export function parseDescription(desc: Description, flag: '-device' | '-object', typeKey: 'driver' | 'type'): ParsedDescription {
  const values = new Map<string, string>();
  let type: string | undefined;
  const text = typeof desc === 'string' ? desc.trim().replace(new RegExp(`^${flag}\\s+`), '') : '';
  if (typeof desc === 'string' && text.startsWith('{')) desc = parseJsonDescription(text, flag);
  if (typeof desc === 'string') {
    splitOptions(text).forEach((part, i) => {
      const eq = part.indexOf('=');
      if (i === 0 && eq < 0) return void (type = part);
      const key = eq < 0 ? part : part.slice(0, eq);
      const value = eq < 0 ? 'on' : part.slice(eq + 1);
      if (key === '') throw new ConfigError(`${flag} '${text}': empty option name`);
      if (values.has(key)) throw new ConfigError(`${flag} '${text}': option '${key}' is given twice`, key);
      values.set(key, value);
    });
  } else {
    flatten(desc, '', values, flag);
  }
  // The type may also come as driver=/qom-type= (QEMU) or type=.
  for (const key of [typeKey, 'driver', 'qom-type', 'type']) {
    if (type === undefined && values.has(key)) {
      type = values.get(key);
      values.delete(key);
    }
  }
  if (!type) throw new ConfigError(`${flag}: no ${typeKey === 'driver' ? 'driver' : 'object type'} given`);
  return { type, values, label: `${flag} ${type}` };
}

/** QEMU's JSON form of a description: one object whose values are scalars or objects of them. */
function parseJsonDescription(text: string, flag: string): Record<string, DescriptionValue> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${flag} '${text}': not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new ConfigError(`${flag} '${text}': the JSON form must be an object`);
  return parsed as Record<string, DescriptionValue>;
}

/** Typed values into `values`, a structured value as its dotted keys (`socket.path`). */
function flatten(desc: Readonly<Record<string, DescriptionValue>>, prefix: string, values: Map<string, string>, flag: string): void {
  for (const [name, value] of Object.entries(desc)) {
    const key = prefix + name;
    if (value === undefined) continue;
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      flatten(value, `${key}.`, values, flag);
      continue;
    }
    if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') {
      throw new ConfigError(`${flag}: option '${key}' must be a string, number, boolean or object`, key);
    }
    if (values.has(key)) throw new ConfigError(`${flag}: option '${key}' is given twice`, key);
    values.set(key, typeof value === 'boolean' ? (value ? 'on' : 'off') : String(value));
  }
}

/** Split at commas; `,,` is a literal comma (QEMU's escape). */
function splitOptions(text: string): string[] {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < text.length; i++) {
    if (text[i] === ',' && text[i + 1] === ',') {
      current += ',';
      i++;
    } else if (text[i] === ',') {
      parts.push(current);
      current = '';
    } else current += text[i];
  }
  parts.push(current);
  return parts.filter((p, i) => p !== '' || i === 0);
}

const ON = new Set(['on', 'true', 'yes']);
const OFF = new Set(['off', 'false', 'no']);

/**
 * Check parsed values against a schema and convert them: on-off → boolean, uint → bigint-safe
 * number, object references checked with `objectExists(type, id)`. Unknown options, bad values
 * and dangling references throw ConfigError naming the option and the value.
 */
export function validateOptions(
  parsed: ParsedDescription,
  schema: OptionSchema,
  objectExists: (type: string, id: string) => boolean,
): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [key, raw] of parsed.values) {
    if (key === 'id') {
      if (!/^[A-Za-z][A-Za-z0-9_.-]*$/.test(raw)) throw new ConfigError(`${parsed.label}: id '${raw}' must start with a letter and use letters, digits, '-', '.', '_'`, 'id', raw);
      out.id = raw;
      continue;
    }
    const spec = schema[key];
    if (!spec) {
      const known = ['id', ...Object.keys(schema)].join(', ');
      throw new ConfigError(`${parsed.label}: unknown option '${key}' (known: ${known})`, key, raw);
    }
    out[key] = convert(parsed.label, key, raw, spec.kind, objectExists);
  }
  return out;
}

function convert(label: string, key: string, raw: string, kind: OptionKind, objectExists: (type: string, id: string) => boolean): string | number | boolean {
  const bad = (expected: string): never => {
    throw new ConfigError(`${label}: invalid value '${raw}' for option '${key}' (expected ${expected})`, key, raw);
  };
  if (kind === 'string') return raw;
  if (kind === 'on-off') return ON.has(raw) ? true : OFF.has(raw) ? false : bad('on or off');
  if (kind === 'on-off-auto') return raw === 'auto' ? 'auto' : ON.has(raw) ? 'on' : OFF.has(raw) ? 'off' : bad('on, off or auto');
  if (kind === 'uint') {
    if (!/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(raw)) bad('a non-negative integer');
    const n = Number(raw);
    return Number.isSafeInteger(n) ? n : bad('an integer below 2^53');
  }
  if (!objectExists(kind.object, raw)) {
    throw new ConfigError(`${label}: option '${key}' refers to '${raw}', but there is no -object ${kind.object} with that id`, key, raw);
  }
  return raw;
}
