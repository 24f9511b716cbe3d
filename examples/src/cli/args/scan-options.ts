// Splitting a command's arguments into options and positionals against a declarative table, the
// way QEMU reads its command line: `-name value` with one dash or two (`--name value`), and also
// `--name=value`. Which values are good is for the caller to say (see option-values.ts).

import { UsageError } from './usage-error.js';

/** One option a command takes: a flag, or an option with a value (given once or repeatedly). */
export type OptionSpec =
  | { readonly kind: 'flag' }
  | { readonly kind: 'value'; readonly metavar: string; readonly repeatable?: boolean };

/** A command's options by name, without dashes (`m`, `device`, `incoming`). */
export type OptionTable = Readonly<Record<string, OptionSpec>>;

type NamesOf<T extends OptionTable, K extends OptionSpec['kind']> = {
  [N in keyof T]: T[N]['kind'] extends K ? N : never;
}[keyof T] & string;

/** One value as given: the option as the user spelled it (for messages) and its value. */
export interface OptionValue {
  readonly option: string;
  readonly value: string;
}

/** What the arguments held. */
export interface ScannedArgs<T extends OptionTable> {
  /** Arguments that are not options, in order. */
  readonly positionals: readonly string[];
  /** `-h`/`--help` was given: the caller prints usage whatever else is there. */
  readonly help: boolean;
  /** Whether a flag was given. */
  flag(name: NamesOf<T, 'flag'>): boolean;
  /** Every value of an option, in order (at most one for an option that is not repeatable). */
  values(name: NamesOf<T, 'value'>): readonly OptionValue[];
}

const HELP = new Set(['h', 'help']);

/**
 * Scan `args` (what follows the command name) against `table`.
 * @param command the command's name, for messages (`run`).
 * @throws UsageError naming the option for an unknown option, a flag given a value, a missing
 *   value, or an option given twice that is not repeatable.
 */
export function scanOptions<T extends OptionTable>(command: string, args: readonly string[], table: T): ScannedArgs<T> {
  const positionals: string[] = [];
  const flags = new Set<string>();
  const values = new Map<string, OptionValue[]>();
  let help = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (!/^--?[^-]/.test(arg)) {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const option = eq < 0 ? arg : arg.slice(0, eq);
    const inline = eq < 0 ? undefined : arg.slice(eq + 1);
    const name = option.replace(/^--?/, '');
    const spec = Object.hasOwn(table, name) ? table[name] : undefined;
    if (!spec && HELP.has(name)) {
      help = true;
      continue;
    }
    if (!spec) throw new UsageError(`vmmkit ${command}: unknown option '${option}'`, option);
    if (spec.kind === 'flag') {
      if (inline !== undefined) throw new UsageError(`vmmkit ${command}: option '${option}' takes no value (given '${inline}')`, option, inline);
      flags.add(name);
      continue;
    }
    const value = inline ?? args[++i];
    if (value === undefined) throw new UsageError(`vmmkit ${command}: option '${option}' needs a value (${spec.metavar})`, option);
    const seen = values.get(name) ?? [];
    if (seen.length > 0 && !spec.repeatable) {
      throw new UsageError(`vmmkit ${command}: option '${option}' is given twice ('${seen[0]!.value}' and '${value}')`, option, value);
    }
    values.set(name, [...seen, { option, value }]);
  }
  return {
    positionals,
    help,
    flag: (name) => flags.has(name),
    values: (name) => values.get(name) ?? [],
  };
}
