// The vmmkit command line, parsed into a typed command: `caps`, `run`, `migrate` or `help`.
// Options follow QEMU (`-m`, `-name`, `-object`, `-device`, `-incoming`), with one dash or two.

import {
  parseBandwidth, parseChannelCount, parseGuestRamSize, parseMigrationUri, parseMilliseconds, parsePositiveInteger, parseQmpSocket, parseSeconds, parseVmName,
} from './option-values.js';
import { scanOptions, type OptionTable, type OptionValue } from './scan-options.js';
import { UsageError } from './usage-error.js';

/** QEMU's default guest RAM (`-m` absent): 128 MiB. */
export const DEFAULT_RAM_SIZE = 128n << 20n;

/** The VM that `run` and `migrate` compose. */
export interface VmArgs {
  /** Run on the simulated host (`--sim`) rather than this machine's kernel. */
  readonly sim: boolean;
  /** Run a guest on KVM (`--kvm`): the kvm device and vmmkit's pages guest. */
  readonly kvm: boolean;
  /** Guest RAM in bytes (`-m`). */
  readonly ramSize: bigint;
  /** `-name`. */
  readonly name?: string;
  /** `-object` descriptions, in order. */
  readonly objects: readonly string[];
  /** `-device` descriptions, in order. */
  readonly devices: readonly string[];
}

/** The migration parameters of `migrate` that were given (the rest keep the library's defaults). */
export interface MigrateParameters {
  readonly downtimeLimitMs?: number;
  readonly maxBandwidth?: number;
  readonly maxIterations?: number;
  readonly channels?: number;
  /** Checksum each pass and check it before the destination starts (`--integrity`). */
  readonly integrity?: boolean;
}

/** A parsed command line. */
export type CommandLine =
  | { readonly command: 'help' }
  | { readonly command: 'caps'; readonly sim: boolean; readonly json: boolean }
  | { readonly command: 'run'; readonly vm: VmArgs; readonly incoming?: string; readonly durationMs?: number; readonly qmp?: string }
  | { readonly command: 'migrate'; readonly uri: string; readonly vm: VmArgs; readonly parameters: MigrateParameters }
  | { readonly command: 'serve'; readonly device: ServeDevice; readonly socket: string };

/** The device models `serve` offers. */
export const SERVE_DEVICES = ['edu', 'nic'] as const;
export type ServeDevice = (typeof SERVE_DEVICES)[number];

/** The commands, for `unknown command` messages. */
export const COMMANDS = ['caps', 'run', 'migrate', 'serve', 'help'] as const;

const VM_OPTIONS = {
  sim: { kind: 'flag' },
  kvm: { kind: 'flag' },
  m: { kind: 'value', metavar: 'SIZE' },
  name: { kind: 'value', metavar: 'NAME' },
  object: { kind: 'value', metavar: 'DESC', repeatable: true },
  device: { kind: 'value', metavar: 'DESC', repeatable: true },
} as const satisfies OptionTable;

const CAPS_OPTIONS = { sim: { kind: 'flag' }, json: { kind: 'flag' } } as const satisfies OptionTable;

const RUN_OPTIONS = {
  ...VM_OPTIONS,
  incoming: { kind: 'value', metavar: 'URI' },
  duration: { kind: 'value', metavar: 'SECONDS' },
  qmp: { kind: 'value', metavar: 'unix:PATH,server=on,wait=off' },
} as const satisfies OptionTable;

const MIGRATE_OPTIONS = {
  ...VM_OPTIONS,
  'downtime-limit': { kind: 'value', metavar: 'MS' },
  'max-bandwidth': { kind: 'value', metavar: 'BYTES/S' },
  'max-iterations': { kind: 'value', metavar: 'N' },
  channels: { kind: 'value', metavar: 'N' },
  integrity: { kind: 'flag' },
} as const satisfies OptionTable;

const SERVE_OPTIONS = {
  device: { kind: 'value', metavar: 'MODEL' },
  socket: { kind: 'value', metavar: 'PATH' },
} as const satisfies OptionTable;

/** sun_path holds 107 bytes and a NUL. */
const SOCKET_PATH_MAX = 107;

/**
 * Parse the arguments after `vmmkit`.
 * @throws UsageError naming the command, option or argument that is wrong, and the value.
 */
export function parseCommandLine(argv: readonly string[]): CommandLine {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
      throw new UsageError('vmmkit: no command given');
    case 'help':
    case '-h':
    case '--help':
      return { command: 'help' };
    case 'caps':
      return parseCaps(rest);
    case 'run':
      return parseRun(rest);
    case 'migrate':
      return parseMigrate(rest);
    case 'serve':
      return parseServe(rest);
    default:
      throw new UsageError(`vmmkit: unknown command '${command}' (commands: ${COMMANDS.join(', ')})`, 'command', command);
  }
}

function parseCaps(args: readonly string[]): CommandLine {
  const scanned = scanOptions('caps', args, CAPS_OPTIONS);
  if (scanned.help) return { command: 'help' };
  noPositionals('caps', scanned.positionals);
  return { command: 'caps', sim: scanned.flag('sim'), json: scanned.flag('json') };
}

function parseRun(args: readonly string[]): CommandLine {
  const scanned = scanOptions('run', args, RUN_OPTIONS);
  if (scanned.help) return { command: 'help' };
  noPositionals('run', scanned.positionals);
  const incoming = scanned.values('incoming')[0];
  const duration = scanned.values('duration')[0];
  const qmp = scanned.values('qmp')[0];
  // `-incoming defer` (QEMU's): the VM waits for migrate-incoming over QMP to say where.
  if (incoming?.value === 'defer' && !qmp) {
    throw new UsageError('vmmkit run: --incoming defer needs --qmp (migrate-incoming says where to listen)', incoming.option, incoming.value);
  }
  return {
    command: 'run',
    vm: vmArgs('run', scanned),
    ...(incoming && { incoming: incoming.value === 'defer' ? 'defer' : parseMigrationUri('run', incoming, 'listen') }),
    ...(duration && { durationMs: parseSeconds('run', duration) }),
    ...(qmp && { qmp: parseQmpSocket('run', qmp) }),
  };
}

function parseMigrate(args: readonly string[]): CommandLine {
  const scanned = scanOptions('migrate', args, MIGRATE_OPTIONS);
  if (scanned.help) return { command: 'help' };
  const [uri, ...extra] = scanned.positionals;
  if (uri === undefined) throw new UsageError('vmmkit migrate: missing argument URI (tcp:HOST:PORT or unix:PATH)', 'URI');
  noPositionals('migrate', extra);
  const downtime = scanned.values('downtime-limit')[0];
  const bandwidth = scanned.values('max-bandwidth')[0];
  const iterations = scanned.values('max-iterations')[0];
  const channels = scanned.values('channels')[0];
  return {
    command: 'migrate',
    uri: parseMigrationUri('migrate', { option: 'URI', value: uri }, 'connect'),
    vm: vmArgs('migrate', scanned),
    parameters: {
      ...(downtime && { downtimeLimitMs: parseMilliseconds('migrate', downtime) }),
      ...(bandwidth && { maxBandwidth: parseBandwidth('migrate', bandwidth) }),
      ...(iterations && { maxIterations: parsePositiveInteger('migrate', iterations) }),
      ...(channels && { channels: parseChannelCount('migrate', channels) }),
      ...(scanned.flag('integrity') && { integrity: true }),
    },
  };
}

function parseServe(args: readonly string[]): CommandLine {
  const scanned = scanOptions('serve', args, SERVE_OPTIONS);
  if (scanned.help) return { command: 'help' };
  noPositionals('serve', scanned.positionals);
  const device = scanned.values('device')[0];
  const socket = scanned.values('socket')[0];
  if (!device) throw new UsageError(`vmmkit serve: missing --device MODEL (${SERVE_DEVICES.join(' or ')})`, '--device');
  if (!socket) throw new UsageError('vmmkit serve: missing --socket PATH', '--socket');
  if (!(SERVE_DEVICES as readonly string[]).includes(device.value)) {
    throw new UsageError(`vmmkit serve: ${device.option} '${device.value}' is not a model vmmkit serves (${SERVE_DEVICES.join(', ')})`, device.option, device.value);
  }
  if (socket.value === '' || Buffer.byteLength(socket.value) > SOCKET_PATH_MAX) {
    throw new UsageError(`vmmkit serve: ${socket.option} '${socket.value}' must be a path of 1 to ${SOCKET_PATH_MAX} bytes`, socket.option, socket.value);
  }
  return { command: 'serve', device: device.value as ServeDevice, socket: socket.value };
}

/** The VM options as any command that takes them scanned them. */
interface GivenVmOptions {
  flag(name: 'sim' | 'kvm'): boolean;
  values(name: 'm' | 'name' | 'object' | 'device'): readonly OptionValue[];
}

function vmArgs(command: string, scanned: GivenVmOptions): VmArgs {
  const m = scanned.values('m')[0];
  const name = scanned.values('name')[0];
  if (scanned.flag('kvm') && scanned.flag('sim')) {
    throw new UsageError(`vmmkit ${command}: --kvm runs guest code in this machine's memory; the simulated host (--sim) has none`, 'kvm');
  }
  return {
    sim: scanned.flag('sim'),
    kvm: scanned.flag('kvm'),
    ramSize: m ? parseGuestRamSize(command, m) : DEFAULT_RAM_SIZE,
    ...(name && { name: parseVmName(command, name) }),
    objects: scanned.values('object').map((v) => v.value),
    devices: scanned.values('device').map((v) => v.value),
  };
}

function noPositionals(command: string, positionals: readonly string[]): void {
  if (positionals.length > 0) {
    throw new UsageError(`vmmkit ${command}: unexpected argument '${positionals[0]}'`, 'argument', positionals[0]);
  }
}
