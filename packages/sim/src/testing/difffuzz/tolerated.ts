// The differences between SimHost and Linux the differential fuzzer tolerates, each named with its
// reason. Everything else is a divergence. A tolerance sees the step, both results and the
// sequence, and says whether this difference is the one it describes.

import type { Sequence, StepResult } from './model.js';

/** A named, explained difference between the hosts that a comparison lets pass. */
export interface Tolerance {
  readonly name: string;
  readonly reason: string;
  matches(sequence: Sequence, index: number, reference: StepResult, candidate: StepResult): boolean;
}

/** Set bits of a hex bitmap, as indices. */
function bits(hexBitmap: string | undefined): Set<number> {
  const out = new Set<number>();
  const bytes = Buffer.from(hexBitmap ?? '', 'hex');
  bytes.forEach((b, i) => {
    for (let k = 0; k < 8; k++) if (b & (1 << k)) out.add(i * 8 + k);
  });
  return out;
}

const bothOk = (a: StepResult, b: StepResult): boolean => a.r === 'ok' && b.r === 'ok';

/** The differences SimHost (in 7.2 mode) is allowed to have from Linux 7.2. */
export const TOLERATED: readonly Tolerance[] = [
  {
    name: 'migration-data',
    reason:
      "SimHost's migrating mdev is its nic model, the kernel's is the mtty sample: each saves its own device state, so the " +
      'bytes a data fd yields, their count, the precopy sizes and MIG_DATA_SIZE are the model\'s own, and so is what a ' +
      'data fd accepts of bytes that are not its own format. The state machine, the data fds it hands out and every ' +
      'other errno are still compared.',
    matches(sequence, index, a, b) {
      const step = sequence[index]!;
      const data = step.op === 'mig.read' || step.op === 'mig.precopy_info' || (step.op === 'mig.feature' && step.a.feature === 9);
      // Writing a stream: the model's own (its length differs), or bytes neither model wrote (each validates its own format).
      const write = step.op === 'mig.write' && step.a.what !== 'none';
      return (data && bothOk(a, b)) || (write && (bothOk(a, b) || step.a.what === 'zeros'));
    },
  },
  {
    name: 'mtty-logging-stub',
    reason:
      "mtty's DMA logging ops are stubs that accept any call once vfio's checks pass: a second START, STOP or REPORT " +
      "without START all succeed. SimHost's nic logs for real, and refuses those (EINVAL) as a logging driver does.",
    matches(sequence, index, a, b) {
      const step = sequence[index]!;
      return step.op === 'mig.feature' && [6, 7, 8].includes(step.a.feature as number) && a.r === 'ok' && b.r === 'EINVAL';
    },
  },
  {
    name: 'contiguous-iopte',
    reason:
      'With large pages allowed (an IOAS left with IOMMU_OPTION_HUGE_PAGES on), Linux maps physically contiguous pinned ' +
      'pages with larger IOPTEs, and which pages are contiguous is chance; a dirty read reports such an IOPTE whole (7.x: ' +
      'all but its last 2 KiB entry), so bits beside the dirty ones are set. SimHost\'s anonymous memory is 4 KiB paged.',
    matches(sequence, index, a, b) {
      if (sequence[index]!.op !== 'dirty.get' || !bothOk(a, b)) return false;
      if (!sequence.some((s) => s.op === 'ioas.alloc' && s.a.huge === true)) return false;
      const [linux, sim] = [bits(a.o?.bitmap), bits(b.o?.bitmap)];
      return [...sim].every((bit) => linux.has(bit));
    },
  },
];
