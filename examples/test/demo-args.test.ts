// The demo's flags: defaults, each flag's value, and an error naming the flag and the value for
// anything it cannot use.

import { describe, expect, it } from 'vitest';
import { DEMO_DEFAULTS, DemoUsageError, parseDemoArgs } from '../src/demo/demo-args.js';

function usageError(argv: string[]): DemoUsageError {
  try {
    parseDemoArgs(argv);
  } catch (e) {
    if (e instanceof DemoUsageError) return e;
    throw e;
  }
  throw new Error(`${argv.join(' ')} was accepted`);
}

describe('parseDemoArgs', () => {
  it('has defaults', () => {
    expect(parseDemoArgs([])).toEqual({ ...DEMO_DEFAULTS, report: undefined, compare: false, json: false, help: false, kvm: false });
  });

  it('reads every flag, as --flag value or --flag=value', () => {
    expect(parseDemoArgs([
      '--strategy=all-dirty', '--memory', '512', '--downtime-limit', '150.5', '--max-bandwidth=64', '--max-iterations', '3',
      '--report', 'out.html', '--json', '-h', '--kvm',
    ])).toEqual({
      strategy: 'all-dirty', memoryMiB: 512, downtimeLimitMs: 150.5, maxBandwidthMiBs: 64, maxIterations: 3, report: 'out.html',
      compare: false, json: true, help: true, kvm: true,
    });
    expect(parseDemoArgs(['--compare']).compare).toBe(true);
  });

  it('takes --no-device-dirty-tracking as the iommu strategy', () => {
    expect(parseDemoArgs(['--no-device-dirty-tracking']).strategy).toBe('iommu');
    expect(parseDemoArgs(['--no-device-dirty-tracking', '--strategy', 'iommu']).strategy).toBe('iommu');
  });

  it.for([
    [['--memory', 'lots'], '--memory', 'lots', `--memory: 'lots' is not a whole number of MiB from 32 to 4096`],
    [['--memory', '16'], '--memory', '16', `--memory: '16' is not a whole number of MiB from 32 to 4096`],
    [['--memory=64.5'], '--memory', '64.5', `--memory: '64.5' is not a whole number of MiB from 32 to 4096`],
    [['--downtime-limit', '-5'], '--downtime-limit', '-5', `--downtime-limit: '-5' is not a number of milliseconds from 1 to 600000`],
    [['--max-bandwidth', '0'], '--max-bandwidth', '0', `--max-bandwidth: '0' is not a number of MiB/s from 0.1 to 100000`],
    [['--max-bandwidth='], '--max-bandwidth', '', `--max-bandwidth: '' is not a number of MiB/s from 0.1 to 100000`],
    [['--max-iterations', '2.5'], '--max-iterations', '2.5', `--max-iterations: '2.5' is not a whole number of iterations from 1 to 1000`],
    [['--strategy', 'magic'], '--strategy', 'magic', `--strategy: 'magic' is not one of device, iommu, all-dirty`],
    [['--speed', '3'], '--speed', undefined, 'unknown flag --speed (see --help)'],
    [['fast'], 'fast', 'fast', `unexpected argument 'fast': the demo takes only flags (see --help)`],
    [['--memory'], '--memory', undefined, '--memory needs a value (see --help)'],
    [['--report', '--json'], '--report', undefined, '--report needs a value (see --help)'],
    [['--json=yes'], '--json', 'yes', `--json takes no value, got 'yes'`],
    [['--strategy', 'device', '--no-device-dirty-tracking'], '--no-device-dirty-tracking', undefined,
      '--no-device-dirty-tracking contradicts --strategy device (it turns device dirty tracking off)'],
    [['--compare', '--strategy', 'iommu'], '--strategy', 'iommu', '--compare runs every strategy: leave out --strategy'],
  ] as const)('refuses %j', ([argv, flag, value, message]) => {
    const e = usageError([...argv]);
    expect(e.message).toBe(message);
    expect([e.flag, e.value]).toEqual([flag, value]);
  });
});
