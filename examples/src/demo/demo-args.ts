// The demo's command line: flags, their defaults and checks, and the help text. A bad flag is a
// DemoUsageError naming the flag and the value (the demo exits with status 2).

/** How the VFIO containers find dirty pages in the demo (packages/migration's strategies). */
export type DemoStrategy = 'device' | 'iommu' | 'all-dirty';

export const DEMO_STRATEGIES: readonly DemoStrategy[] = ['device', 'iommu', 'all-dirty'];

/** The demo's settings, after parsing and checking. */
export interface DemoOptions {
  /** The strategy of the run (ignored with `compare`, which runs each). */
  readonly strategy: DemoStrategy;
  readonly memoryMiB: number;
  readonly downtimeLimitMs: number;
  /** Stream bandwidth limit, MiB/s. */
  readonly maxBandwidthMiBs: number;
  readonly maxIterations: number;
  /** Write the HTML report to this file. */
  readonly report?: string;
  readonly compare: boolean;
  readonly json: boolean;
  readonly help: boolean;
  /** Run the guest on this machine's KVM (where /dev/kvm works; the demo falls back otherwise). */
  readonly kvm: boolean;
}

export const DEMO_DEFAULTS = {
  strategy: 'device', memoryMiB: 256, downtimeLimitMs: 300, maxBandwidthMiBs: 32, maxIterations: 8,
} as const satisfies Partial<DemoOptions>;

interface Range {
  readonly min: number;
  readonly max: number;
  readonly integer: boolean;
  readonly what: string;
}

const MEMORY: Range = { min: 32, max: 4096, integer: true, what: 'a whole number of MiB' };
const DOWNTIME: Range = { min: 1, max: 600_000, integer: false, what: 'a number of milliseconds' };
const BANDWIDTH: Range = { min: 0.1, max: 100_000, integer: false, what: 'a number of MiB/s' };
const ITERATIONS: Range = { min: 1, max: 1000, integer: true, what: 'a whole number of iterations' };

/** A flag the demo does not accept, or a value it cannot use. */
export class DemoUsageError extends Error {
  override readonly name = 'DemoUsageError';
  constructor(readonly flag: string, readonly value: string | undefined, message: string) {
    super(message);
  }
}

export const DEMO_USAGE = `Usage: npm run demo -- [flags]

Live-migrates a VM with two vfio-pci NICs (NIC A on legacy type1, NIC B on IOMMUFD) between two
VMMs on simulated hosts, shows the migration plan and progress, and verifies the destination.

  --strategy device|iommu|all-dirty
                         how dirty pages are found (default ${DEMO_DEFAULTS.strategy}):
                           device     the NICs log their own DMA
                           iommu      the IOMMU tracks (type1 for NIC A, HWPT for NIC B)
                           all-dirty  nothing tracks: NICs with enable-migration=on
  --no-device-dirty-tracking
                         x-device-dirty-page-tracking=off on both NICs (the iommu strategy)
  --memory MiB           guest RAM, ${MEMORY.min} to ${MEMORY.max} (default ${DEMO_DEFAULTS.memoryMiB})
  --downtime-limit MS    longest pause of the guest at switchover (default ${DEMO_DEFAULTS.downtimeLimitMs})
  --max-bandwidth MiB/s  migration stream bandwidth (default ${DEMO_DEFAULTS.maxBandwidthMiBs})
  --max-iterations N     precopy passes before switching over anyway (default ${DEMO_DEFAULTS.maxIterations})
  --kvm                  run a real guest on this machine's KVM (a bare-metal program that
                         finds NIC A on its PCI bus, receives into a ring and writes pages)
                         with the NICs simulated beside it; without a usable /dev/kvm the demo
                         says so and runs its JavaScript guest
  --compare              run the same workload once per strategy and compare them
  --report FILE          write an HTML report (charts pass by pass, the result, the comparison)
  --json                 print the result as JSON instead of text
  -h, --help             this help

Exit status: 0 verified, 1 the migration failed or the destination differs, 2 bad flags.`;

const FLAGS: Readonly<Record<string, 'value' | 'switch'>> = {
  '--strategy': 'value', '--memory': 'value', '--downtime-limit': 'value', '--max-bandwidth': 'value', '--max-iterations': 'value',
  '--report': 'value', '--compare': 'switch', '--json': 'switch', '--no-device-dirty-tracking': 'switch', '--help': 'switch', '--kvm': 'switch',
};

/** Parse and check the demo's arguments (without the node and script paths). @throws DemoUsageError */
export function parseDemoArgs(argv: readonly string[]): DemoOptions {
  const given = readFlags(argv);
  const value = (flag: string): string | undefined => given.get(flag) as string | undefined;
  const noDeviceTracking = given.has('--no-device-dirty-tracking');
  const strategyText = value('--strategy');
  const strategy = strategyText === undefined ? undefined : oneOf('--strategy', strategyText, DEMO_STRATEGIES);
  if (noDeviceTracking && strategy === 'device') {
    throw new DemoUsageError('--no-device-dirty-tracking', undefined, '--no-device-dirty-tracking contradicts --strategy device (it turns device dirty tracking off)');
  }
  const compare = given.has('--compare');
  if (compare && (strategy !== undefined || noDeviceTracking)) {
    const flag = strategy !== undefined ? '--strategy' : '--no-device-dirty-tracking';
    throw new DemoUsageError(flag, strategyText, `--compare runs every strategy: leave out ${flag}`);
  }
  const report = value('--report');
  if (report !== undefined && report.trim() === '') throw new DemoUsageError('--report', report, '--report needs a file name');
  return {
    strategy: strategy ?? (noDeviceTracking ? 'iommu' : DEMO_DEFAULTS.strategy),
    memoryMiB: number('--memory', value('--memory'), MEMORY, DEMO_DEFAULTS.memoryMiB),
    downtimeLimitMs: number('--downtime-limit', value('--downtime-limit'), DOWNTIME, DEMO_DEFAULTS.downtimeLimitMs),
    maxBandwidthMiBs: number('--max-bandwidth', value('--max-bandwidth'), BANDWIDTH, DEMO_DEFAULTS.maxBandwidthMiBs),
    maxIterations: number('--max-iterations', value('--max-iterations'), ITERATIONS, DEMO_DEFAULTS.maxIterations),
    report, compare, json: given.has('--json'), help: given.has('--help'), kvm: given.has('--kvm'),
  };
}

/** Each flag given and its value (`true` for a switch); a later repeat wins. */
function readFlags(argv: readonly string[]): Map<string, string | true> {
  const given = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-h') {
      given.set('--help', true);
      continue;
    }
    if (!arg.startsWith('--')) throw new DemoUsageError(arg, arg, `unexpected argument '${arg}': the demo takes only flags (see --help)`);
    const eq = arg.indexOf('=');
    const flag = eq < 0 ? arg : arg.slice(0, eq);
    const kind = FLAGS[flag];
    if (!kind) throw new DemoUsageError(flag, undefined, `unknown flag ${flag} (see --help)`);
    if (kind === 'switch') {
      if (eq >= 0) throw new DemoUsageError(flag, arg.slice(eq + 1), `${flag} takes no value, got '${arg.slice(eq + 1)}'`);
      given.set(flag, true);
    } else if (eq >= 0) {
      given.set(flag, arg.slice(eq + 1));
    } else {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new DemoUsageError(flag, undefined, `${flag} needs a value (see --help)`);
      given.set(flag, next);
      i++;
    }
  }
  return given;
}

function number(flag: string, text: string | undefined, range: Range, fallback: number): number {
  if (text === undefined) return fallback;
  const n = text.trim() === '' ? NaN : Number(text);
  if (!Number.isFinite(n) || (range.integer && !Number.isInteger(n)) || n < range.min || n > range.max) {
    throw new DemoUsageError(flag, text, `${flag}: '${text}' is not ${range.what} from ${range.min} to ${range.max}`);
  }
  return n;
}

function oneOf<T extends string>(flag: string, text: string, choices: readonly T[]): T {
  if ((choices as readonly string[]).includes(text)) return text as T;
  throw new DemoUsageError(flag, text, `${flag}: '${text}' is not one of ${choices.join(', ')}`);
}
