// Checking a command's arguments against its schema, as QEMU's QObject input visitor does, with
// its messages: "Parameter 'x' is missing", "Invalid parameter type for 'x', expected: integer",
// "Parameter 'x' is unexpected", "Parameter 'x' does not accept value 'y'". Nested members are
// named by their path (`channels[0].addr.path`).

import { genericError } from './qmp-error.js';

/** A QAPI type, as far as vmmkit's commands use them. */
export type QmpType =
  | 'str'
  | 'int'
  | 'bool'
  | 'number'
  /** Any JSON value (device_add's and object-add's properties). */
  | 'any'
  | { readonly enum: readonly string[] }
  | { readonly list: QmpType }
  | { readonly struct: QmpSchema };

/** Members by name; a name starting with `*` is optional (QAPI's notation). */
export type QmpSchema = Readonly<Record<string, QmpType>>;

/** JSON values as a command receives them. */
export type QmpValue = string | number | boolean | null | QmpValue[] | { [key: string]: QmpValue };
export type QmpArgs = Readonly<Record<string, QmpValue>>;

const EXPECTED: Record<string, string> = { str: 'string', int: 'integer', bool: 'boolean', number: 'number' };

/**
 * Check `args` against `schema`. With `extra`, members the schema does not name are allowed
 * (device_add and object-add pass them on to the device or object type).
 * @throws QmpError (GenericError) naming the first member at fault.
 */
export function checkArgs(args: QmpArgs, schema: QmpSchema, options: { readonly extra?: boolean } = {}): void {
  checkStruct(args, schema, '', options.extra ?? false);
}

function checkStruct(value: Readonly<Record<string, QmpValue>>, schema: QmpSchema, path: string, extra: boolean): void {
  const known = new Set<string>();
  for (const [key, type] of Object.entries(schema)) {
    const optional = key.startsWith('*');
    const name = optional ? key.slice(1) : key;
    known.add(name);
    const member = value[name];
    const at = path ? `${path}.${name}` : name;
    if (member === undefined) {
      if (!optional) throw genericError(`Parameter '${at}' is missing`);
      continue;
    }
    checkValue(member, type, at);
  }
  if (extra) return;
  for (const key of Object.keys(value)) {
    if (!known.has(key)) throw genericError(`Parameter '${path ? `${path}.${key}` : key}' is unexpected`);
  }
}

function checkValue(value: QmpValue, type: QmpType, at: string): void {
  if (type === 'any') return;
  if (typeof type === 'string') {
    const ok = type === 'str' ? typeof value === 'string'
      : type === 'bool' ? typeof value === 'boolean'
      : type === 'int' ? Number.isSafeInteger(value)
      : typeof value === 'number';
    if (!ok) throw genericError(`Invalid parameter type for '${at}', expected: ${EXPECTED[type]}`);
    return;
  }
  if ('enum' in type) {
    if (typeof value !== 'string') throw genericError(`Invalid parameter type for '${at}', expected: string`);
    if (!type.enum.includes(value)) throw genericError(`Parameter '${at}' does not accept value '${value}'`);
    return;
  }
  if ('list' in type) {
    if (!Array.isArray(value)) throw genericError(`Invalid parameter type for '${at}', expected: array`);
    value.forEach((item, i) => checkValue(item, type.list, `${at}[${i}]`));
    return;
  }
  if (!isObject(value)) throw genericError(`Invalid parameter type for '${at}', expected: object`);
  checkStruct(value, type.struct, at, false);
}

/** Whether a JSON value is an object (not an array, not null). */
export function isObject(value: unknown): value is { [key: string]: QmpValue } {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
