// The vmmkit command line: what each command accepts, and that every mistake is a UsageError
// naming the option (or argument) and the value.

import { describe, expect, it } from 'vitest';
import { DEFAULT_RAM_SIZE, parseCommandLine } from '../src/cli/args/command-line.js';
import { UsageError } from '../src/cli/args/usage-error.js';
import { runCli } from '../src/cli/cli.js';
import { EXIT_OK, EXIT_USAGE } from '../src/cli/exit-codes.js';
import { testIo } from './cli-test-io.js';

const MiB = 1n << 20n;

function usageError(argv: string[]): UsageError {
  try {
    parseCommandLine(argv);
  } catch (e) {
    if (e instanceof UsageError) return e;
    throw e;
  }
  throw new Error(`'${argv.join(' ')}' parsed without an error`);
}

describe('vmmkit command line: accepted', () => {
  it('caps takes --sim and --json', () => {
    expect(parseCommandLine(['caps'])).toEqual({ command: 'caps', sim: false, json: false });
    expect(parseCommandLine(['caps', '--json', '--sim'])).toEqual({ command: 'caps', sim: true, json: true });
  });

  it('run takes QEMU options with one dash or two, repeated -object/-device in order, and defaults', () => {
    const line = parseCommandLine([
      'run', '--sim', '-m', '1G', '-name', 'guest=demo', '-object', 'iommufd,id=iommufd0',
      '-device', 'vfio-pci,host=0000:00:05.0', '--device', 'vfio-pci,host=0000:00:06.0,iommufd=iommufd0',
      '-incoming', 'tcp:127.0.0.1:0', '--duration=0.25',
    ]);
    expect(line).toEqual({
      command: 'run',
      vm: {
        sim: true, kvm: false, ramSize: 1024n * MiB, name: 'demo', objects: ['iommufd,id=iommufd0'],
        devices: ['vfio-pci,host=0000:00:05.0', 'vfio-pci,host=0000:00:06.0,iommufd=iommufd0'],
      },
      incoming: 'tcp:127.0.0.1:0',
      durationMs: 250,
    });
    expect(parseCommandLine(['run'])).toEqual({ command: 'run', vm: { sim: false, kvm: false, ramSize: DEFAULT_RAM_SIZE, objects: [], devices: [] } });
  });

  it.for([
    ['512', 512n * MiB], ['512M', 512n * MiB], ['2G', 2048n * MiB], ['1.5G', 1536n * MiB], ['65536K', 64n * MiB],
    ['64MiB', 64n * MiB], ['1T', 1n << 40n], ['4096B', 4096n],
  ] as const)('-m %s is %d bytes', ([value, bytes]) => {
    const line = parseCommandLine(['run', '-m', value]);
    expect(line.command === 'run' && line.vm.ramSize).toBe(bytes);
  });

  it('migrate takes the URI anywhere among its options, and the migration parameters', () => {
    const line = parseCommandLine([
      'migrate', '--sim', 'unix:/run/vm.sock', '--downtime-limit', '50', '--max-bandwidth', '100M', '--max-iterations', '5', '--channels', '4', '--integrity',
    ]);
    expect(line).toEqual({
      command: 'migrate', uri: 'unix:/run/vm.sock',
      vm: { sim: true, kvm: false, ramSize: DEFAULT_RAM_SIZE, objects: [], devices: [] },
      parameters: { downtimeLimitMs: 50, maxBandwidth: 100 * 2 ** 20, maxIterations: 5, channels: 4, integrity: true },
    });
    const none = parseCommandLine(['migrate', 'unix:/s', '--channels', '0']);
    expect(none.command === 'migrate' && none.parameters).toEqual({ channels: 0 });
    const plain = parseCommandLine(['migrate', 'tcp:[::1]:4444']);
    expect(plain.command === 'migrate' && [plain.uri, plain.parameters]).toEqual(['tcp:[::1]:4444', {}]);
  });

  it('numbers at the top of their range, read exactly', () => {
    const qmp = parseCommandLine(['run', '--qmp', 'unix:/run/vm.qmp,server,nowait', '--incoming', 'defer']);
    expect(qmp.command === 'run' && [qmp.qmp, qmp.incoming]).toEqual(['/run/vm.qmp', 'defer']);
    const run = parseCommandLine(['run', '-m', '8388607.99993896484375G', '--duration', '9007199254740.991', '--incoming', 'tcp:[::1]:0']);
    expect(run.command === 'run' && [run.vm.ramSize, run.durationMs, run.incoming]).toEqual([(1n << 53n) - 65536n, Number.MAX_SAFE_INTEGER, 'tcp:[::1]:0']);
    // Past 2^31 - 1 ms, the most one Node timer waits: waitFor re-arms (see cli-run's test of it).
    const long = parseCommandLine(['run', '--duration', '2147484']);
    expect(long.command === 'run' && long.durationMs).toBe(2_147_484_000);
    const migrate = parseCommandLine([
      'migrate', 'tcp:127.0.0.1:1', '--downtime-limit', '2000000', '--max-bandwidth', '9007199254740991', '--max-iterations', '9007199254740991',
    ]);
    expect(migrate.command === 'migrate' && [migrate.uri, migrate.parameters]).toEqual([
      'tcp:127.0.0.1:1', { downtimeLimitMs: 2_000_000, maxBandwidth: Number.MAX_SAFE_INTEGER, maxIterations: Number.MAX_SAFE_INTEGER },
    ]);
    const fine = parseCommandLine(['migrate', 'unix:/s', '--downtime-limit', '12.5', '--max-bandwidth', '0.5K']);
    expect(fine.command === 'migrate' && fine.parameters).toEqual({ downtimeLimitMs: 12.5, maxBandwidth: 512 });
  });

  it.for([['help'], ['--help'], ['-h'], ['run', '--help'], ['migrate', '-h', 'tcp:x:1'], ['caps', '--help']])('%s asks for help', (argv) => {
    expect(parseCommandLine(argv)).toEqual({ command: 'help' });
  });
});

describe('vmmkit command line: refused, naming the option and the value', () => {
  it.for([
    { argv: ['frob'], option: 'command', value: 'frob', says: "unknown command 'frob'" },
    { argv: ['run', '--frob'], option: '--frob', says: "unknown option '--frob'" },
    { argv: ['caps', '-m', '1G'], option: '-m', says: "unknown option '-m'" },
    { argv: ['run', '-m'], option: '-m', says: "option '-m' needs a value (SIZE)" },
    { argv: ['run', '-m', '12x'], option: '-m', value: '12x', says: "invalid value '12x' for -m" },
    { argv: ['run', '-m', '0'], option: '-m', value: '0', says: "invalid value '0' for -m" },
    { argv: ['run', '-m', '1000B'], option: '-m', value: '1000B', says: '4 KiB pages' },
    { argv: ['run', '-m', '1G', '-m', '2G'], option: '-m', value: '2G', says: "option '-m' is given twice ('1G' and '2G')" },
    { argv: ['run', '--sim=yes'], option: '--sim', value: 'yes', says: "option '--sim' takes no value" },
    { argv: ['run', '-name', 'a,process=b'], option: '-name', value: 'a,process=b', says: 'NAME or guest=NAME' },
    { argv: ['run', '--incoming', 'tcp:localhost'], option: '--incoming', value: 'tcp:localhost', says: 'tcp:HOST:PORT or unix:PATH' },
    { argv: ['run', '--incoming', 'tcp:127.0.0.1:99999'], option: '--incoming', value: 'tcp:127.0.0.1:99999', says: 'with PORT 0 (any free port) to 65535' },
    { argv: ['run', '--qmp', '/tmp/q.sock'], option: '--qmp', value: '/tmp/q.sock', says: 'unix:PATH,server=on,wait=off' },
    { argv: ['run', '--qmp', 'unix:/tmp/q.sock'], option: '--qmp', value: 'unix:/tmp/q.sock', says: 'unix:PATH,server=on,wait=off' },
    { argv: ['run', '--qmp', 'unix:/tmp/q.sock,server=on,wait=on'], option: '--qmp', value: 'unix:/tmp/q.sock,server=on,wait=on', says: 'unix:PATH,server=on,wait=off' },
    { argv: ['run', '--qmp', 'unix:/tmp/q.sock,server=on,wait=off,tls=on'], option: '--qmp', value: 'unix:/tmp/q.sock,server=on,wait=off,tls=on', says: 'unix:PATH,server=on,wait=off' },
    { argv: ['run', '--qmp', 'unix:,server=on,wait=off'], option: '--qmp', value: 'unix:,server=on,wait=off', says: 'unix:PATH,server=on,wait=off' },
    { argv: ['run', '--incoming', 'defer'], option: '--incoming', value: 'defer', says: '--incoming defer needs --qmp' },
    { argv: ['run', '--duration', '-1'], option: '--duration', value: '-1', says: "invalid value '-1' for --duration" },
    { argv: ['run', '--duration', 'soon'], option: '--duration', value: 'soon', says: 'a number of seconds' },
    { argv: ['run', 'extra'], option: 'argument', value: 'extra', says: "unexpected argument 'extra'" },
    { argv: ['migrate'], option: 'URI', says: 'missing argument URI' },
    { argv: ['migrate', 'http://x'], option: 'URI', value: 'http://x', says: "invalid value 'http://x' for URI" },
    { argv: ['migrate', 'tcp:127.0.0.1:0'], option: 'URI', value: 'tcp:127.0.0.1:0', says: "invalid value 'tcp:127.0.0.1:0' for URI (expected tcp:HOST:PORT or unix:PATH, with PORT 1 to 65535)" },
    { argv: ['migrate', 'tcp:127.0.0.1:65536'], option: 'URI', value: 'tcp:127.0.0.1:65536', says: 'with PORT 1 to 65535' },
    { argv: ['migrate', 'tcp:h:1', 'tcp:h:2'], option: 'argument', value: 'tcp:h:2', says: "unexpected argument 'tcp:h:2'" },
    { argv: ['migrate', 'tcp:h:1', '--downtime-limit', '0'], option: '--downtime-limit', value: '0', says: 'a positive number of milliseconds' },
    { argv: ['migrate', 'tcp:h:1', '--max-bandwidth', 'fast'], option: '--max-bandwidth', value: 'fast', says: 'bytes per second' },
    { argv: ['migrate', 'tcp:h:1', '--max-iterations', '2.5'], option: '--max-iterations', value: '2.5', says: 'a positive integer' },
    { argv: ['migrate', 'tcp:h:1', '--channels', '17'], option: '--channels', value: '17', says: 'a whole number from 0 to 16' },
    { argv: ['migrate', 'tcp:h:1', '--channels', '1.5'], option: '--channels', value: '1.5', says: 'a whole number from 0 to 16' },
    { argv: ['migrate', 'tcp:h:1', '--incoming', 'tcp:h:2'], option: '--incoming', says: "unknown option '--incoming'" },
    // Sizes, durations and counts past what their option can hold, or with absurdly many digits.
    { argv: ['run', '-m', '1048576T'], option: '-m', value: '1048576T', says: "invalid value '1048576T' for -m (expected a size such as 512M or 2G, a whole number of 4 KiB pages, less than 8 PiB)" },
    { argv: ['run', '-m', '8388608G'], option: '-m', value: '8388608G', says: 'less than 8 PiB' },
    { argv: ['run', '-m', '9007199254740992B'], option: '-m', value: '9007199254740992B', says: 'less than 8 PiB' },
    { argv: ['run', '-m', '16777216T'], option: '-m', value: '16777216T', says: 'less than 8 PiB' },
    { argv: ['run', '-m', '4'.repeat(400)], option: '-m', value: '4'.repeat(400), says: `invalid value '${'4'.repeat(32)}...' (400 characters) for -m` },
    { argv: ['run', '--duration', '9'.repeat(400)], option: '--duration', value: '9'.repeat(400), says: '(400 characters) for --duration (expected a number of seconds' },
    { argv: ['run', '--duration', '9007199254741'], option: '--duration', value: '9007199254741', says: 'a number of seconds' },
    { argv: ['migrate', 'tcp:h:1', '--downtime-limit', '4'.repeat(400)], option: '--downtime-limit', value: '4'.repeat(400), says: '(400 characters) for --downtime-limit' },
    { argv: ['migrate', 'tcp:h:1', '--downtime-limit', '2000001'], option: '--downtime-limit', value: '2000001', says: 'a positive number of milliseconds, such as 300, at most 2000000' },
    { argv: ['migrate', 'tcp:h:1', '--downtime-limit', '0.0001'], option: '--downtime-limit', value: '0.0001', says: 'a positive number of milliseconds' },
    { argv: ['migrate', 'tcp:h:1', '--max-bandwidth', '9007199254740992'], option: '--max-bandwidth', value: '9007199254740992', says: 'at most 2^53 - 1' },
    { argv: ['migrate', 'tcp:h:1', '--max-bandwidth', `0.${'5'.repeat(40)}K`], option: '--max-bandwidth', value: `0.${'5'.repeat(40)}K`, says: 'bytes per second' },
    { argv: ['migrate', 'tcp:h:1', '--max-iterations', '9007199254740992'], option: '--max-iterations', value: '9007199254740992', says: 'a positive integer' },
  ])('$argv', ({ argv, option, value, says }) => {
    const e = usageError(argv);
    expect(e.message).toContain(says);
    expect(e.option).toBe(option);
    expect(e.value).toBe(value);
    if (option.startsWith('-')) expect(e.message).toContain(option);
  });

  it('no command at all is bad usage too', () => {
    expect(usageError([]).message).toBe('vmmkit: no command given');
  });
});

describe('vmmkit usage through the CLI', () => {
  it('help prints the usage of every command and exits 0', async () => {
    const t = testIo();
    expect(await runCli(['help'], t.io)).toBe(EXIT_OK);
    const text = t.out.join('\n');
    for (const command of ['caps [--sim] [--json]', 'run [VM OPTIONS]', 'migrate URI [VM OPTIONS]', 'Exit status']) expect(text).toContain(command);
  });

  it('a usage error exits 2 with one line naming it and a hint to vmmkit help', async () => {
    const t = testIo();
    expect(await runCli(['run', '-m', 'lots'], t.io)).toBe(EXIT_USAGE);
    expect(t.err).toEqual([
      "vmmkit run: invalid value 'lots' for -m (expected a size such as 512M or 2G, a whole number of 4 KiB pages, less than 8 PiB)",
      "Try 'vmmkit help' for usage.",
    ]);
    expect(t.out).toEqual([]);
  });

  it('more RAM than the host port can map is bad usage (exit 2) naming -m, before any memory is mapped', async () => {
    const t = testIo();
    expect(await runCli(['run', '--sim', '-m', '1048576T', '--duration', '0'], t.io)).toBe(EXIT_USAGE);
    expect(t.err[0]).toMatch(/^vmmkit run: invalid value '1048576T' for -m \(/);
    expect(t.out).toEqual([]);
  });
});
