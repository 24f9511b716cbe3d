// The seeded generator of the differential fuzzer: a sequence picks a theme (which families of
// operations it draws from, and a prelude that sets up what they need), then draws 10 to 40 steps.
// The same seed gives the same sequence.
//
// What it never draws, and why: what SimHost does not model (nested HWPTs and huge-page mock tables
// from IOMMU_HWPT_DATA_SELFTEST data, IOAS_MAP_FILE, vIOMMUs, fault queues, PASID attachment,
// low-power states); user ranges past the end of its buffers (on Linux whatever mapping follows
// decides); large pages left on where dirty bits are read (see tolerated.ts); and a migrating mdev's
// fd closed mid-sequence (see THEMES).

import { Gen, type Family, type OpSpec } from './gen.js';
import type { HandleKind, Sequence, Step } from './model.js';
import { CDEV_OPS } from './ops-cdev.js';
import { HWPT_OPS } from './ops-hwpt.js';
import { IOMMUFD_OPS } from './ops-iommufd.js';
import { MIG_OPS } from './ops-mig.js';
import { SELFTEST_OPS } from './ops-selftest.js';
import { TYPE1_OPS } from './ops-type1.js';
import { Rng } from './rng.js';

/** Every operation, by name. */
export const OPS: ReadonlyMap<string, OpSpec> = new Map(
  [...IOMMUFD_OPS, ...HWPT_OPS, ...SELFTEST_OPS, ...TYPE1_OPS, ...CDEV_OPS, ...MIG_OPS].map((o) => [o.name, o]),
);

/** A theme: how much each family is drawn, and the steps that open a sequence of it. */
interface Theme {
  readonly name: string;
  readonly weight: number;
  /** Fd kinds no step closes (the sequence's end closes everything). */
  readonly keepOpen?: readonly HandleKind[];
  readonly families: Readonly<Partial<Record<Family, number>>>;
  readonly prelude: readonly (readonly [op: string, args?: Record<string, unknown>])[];
}

/** The themes sequences are drawn from. */
export const THEMES: readonly Theme[] = [
  { name: 'iommufd', weight: 30, families: { iommufd: 6, selftest: 4 }, prelude: [['iommufd.open'], ['ioas.alloc'], ['mock.domain']] },
  {
    name: 'mock-dirty', weight: 20, families: { iommufd: 5, selftest: 5 },
    prelude: [
      ['iommufd.open'], ['ioas.alloc', { huge: false }], ['mock.domain', { pt: { step: 1, field: 'out_ioas_id' } }],
      ['hwpt.alloc', { flags: 2, dataType: 0, dataLen: 0, pt: { step: 1, field: 'out_ioas_id' } }], ['dirty.set', { flags: 1 }],
    ],
  },
  {
    name: 'type1', weight: 20, families: { type1: 8, iommufd: 1, cdev: 1 },
    prelude: [['container.open'], ['group.open', { dev: 0 }], ['group.set_container'], ['container.set_iommu', { type: 3 }]],
  },
  {
    // iommufd's VFIO compat container: a group set to an iommufd, type1 on the iommufd fd.
    name: 'compat', weight: 8, families: { type1: 6, iommufd: 4 },
    prelude: [
      ['iommufd.open'], ['group.open', { dev: 0 }], ['group.set_container', { container: { step: 0, field: 'fd' } }],
      ['container.set_iommu', { container: { step: 0, field: 'fd' }, type: 3 }],
    ],
  },
  {
    name: 'cdev', weight: 14, families: { cdev: 5, iommufd: 4, type1: 1 },
    prelude: [['iommufd.open'], ['cdev.open', { dev: 0 }], ['cdev.bind', { argsz: 16, flags: 0 }], ['ioas.alloc'], ['cdev.attach', { pt: { step: 3, field: 'out_ioas_id' } }]],
  },
  {
    // Linux 7.2's mtty keeps its migration state when its fd is closed, and RESUMING -> STOP after a
    // reopen dereferences the resuming file it dropped (an Oops): device fds stay open to the end,
    // where the run resets the device before closing it.
    name: 'migration', weight: 8, families: { migration: 7, cdev: 2, iommufd: 1 }, keepOpen: ['device'],
    prelude: [
      ['iommufd.open'], ['cdev.open', { dev: 2 }], ['cdev.bind', { argsz: 16, flags: 0 }], ['ioas.alloc'],
      ['cdev.attach', { flags: 0, size: 'exact', pt: { step: 3, field: 'out_ioas_id' } }],
    ],
  },
];

/** What a campaign may restrict generation to. */
export interface GenerateOptions {
  /** Only these themes (by name); default all. */
  readonly themes?: readonly string[];
}

/** The sequence of `seed`: a theme's prelude, then random steps of its families. */
export function generate(seed: number, options: GenerateOptions = {}): Sequence {
  const rng = new Rng(seed);
  const themes = THEMES.filter((t) => !options.themes || options.themes.includes(t.name));
  const theme = rng.weighted(themes.map((t) => [t, t.weight] as const));
  const g = new Gen(rng, theme.keepOpen);
  const steps: Step[] = [];
  const add = (spec: OpSpec, override?: Record<string, unknown>): void => {
    g.beginStep();
    if (override) g.clean = true; // a prelude sets things up: well formed
    const step: Step = { id: steps.length, op: spec.name, a: { ...spec.gen(g), ...override } };
    steps.push(step);
    g.made(step.id, spec, step.a);
  };
  for (const [name, override] of theme.prelude) add(OPS.get(name)!, override ?? {});
  const pool = [...OPS.values()].flatMap((o) => (theme.families[o.family] ? [[o, o.weight * theme.families[o.family]!] as const] : []));
  const length = 10 + rng.int(31);
  while (steps.length < length) {
    const spec = rng.weighted(pool);
    // Operations on handles no step has made yet would only say EBADF or ENOENT: draw another.
    if (spec.needs && !g.has(spec.needs) && rng.chance(0.9)) continue;
    add(spec);
  }
  return steps;
}
