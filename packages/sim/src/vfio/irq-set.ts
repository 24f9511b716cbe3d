// VFIO_DEVICE_GET_IRQ_INFO and VFIO_DEVICE_SET_IRQS of vfio-pci: the index/start/count/data
// rules of vfio_set_irqs_validate_and_prepare and the per-index handlers of vfio_pci_intrs.c.

import {
  VFIO_IRQ_INFO_AUTOMASKED, VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_INFO_MASKABLE, VFIO_IRQ_INFO_NORESIZE,
  VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_TYPE_MASK, VFIO_IRQ_SET_ACTION_UNMASK,
  VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE, VFIO_IRQ_SET_DATA_TYPE_MASK,
  VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX,
  VFIO_PCI_NUM_IRQS, VFIO_PCI_REQ_IRQ_INDEX, vfio_irq_info, vfio_irq_set, PCI_CAP_ID_EXP, PCI_INTERRUPT_PIN,
  findCapability,
} from '@vmmkit/core/uapi';
import { fail } from '../kernel/sim-errno.js';
import type { UserArg } from '../kernel/user-arg.js';
import type { VfioPciCore } from './device-core.js';
import { setIntx } from './irq-intx.js';
import { setMsi, setSingle } from './irq-msi.js';

/** One SET_IRQS request, validated. `data` holds `count` bools or eventfd numbers (or nothing). */
export interface IrqRequest {
  readonly flags: number;
  readonly index: number;
  readonly start: number;
  readonly count: number;
  readonly data: Uint8Array;
}

/** vfio_pci_get_irq_count. */
export function irqCount(core: VfioPciCore, index: number): number {
  const model = core.device.model;
  switch (index) {
    case VFIO_PCI_INTX_IRQ_INDEX: return model.interrupts.intx && model.config[PCI_INTERRUPT_PIN] ? 1 : 0;
    case VFIO_PCI_MSI_IRQ_INDEX: return model.interrupts.msi;
    case VFIO_PCI_MSIX_IRQ_INDEX: return model.interrupts.msix;
    case VFIO_PCI_ERR_IRQ_INDEX: return isPcie(core) ? 1 : 0;
    case VFIO_PCI_REQ_IRQ_INDEX: return 1;
    default: return 0;
  }
}

function isPcie(core: VfioPciCore): boolean {
  return findCapability(core.device.model.config, PCI_CAP_ID_EXP) !== 0;
}

/** VFIO_DEVICE_GET_IRQ_INFO. */
export function getIrqInfo(core: VfioPciCore, user: UserArg): number {
  const minsz = vfio_irq_info.size;
  const info = vfio_irq_info.decode(user.read(0, minsz));
  if (info.argsz < minsz || info.index >= VFIO_PCI_NUM_IRQS) fail('EINVAL', `argsz ${info.argsz} or index ${info.index} out of range`);
  if (info.index === VFIO_PCI_ERR_IRQ_INDEX && !isPcie(core)) fail('EINVAL', 'the error IRQ exists only for PCI Express devices');
  if (core.device.model.interrupts.infoRefused?.includes(info.index)) fail('EINVAL', `the device's driver has no IRQ index ${info.index}`);
  let flags = VFIO_IRQ_INFO_EVENTFD;
  if (info.index === VFIO_PCI_INTX_IRQ_INDEX) flags |= VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
  // MSI-X vectors can be added while enabled (dynamic MSI-X, as on x86 with interrupt remapping).
  else if (info.index !== VFIO_PCI_MSIX_IRQ_INDEX) flags |= VFIO_IRQ_INFO_NORESIZE;
  user.write(0, vfio_irq_info.encode({ ...info, flags, count: irqCount(core, info.index) }));
  return 0;
}

/** VFIO_DEVICE_SET_IRQS. */
export function setIrqs(core: VfioPciCore, user: UserArg): number {
  const minsz = vfio_irq_set.size;
  const hdr = vfio_irq_set.decode(user.read(0, minsz));
  const max = irqCount(core, hdr.index);
  if (hdr.argsz < minsz || hdr.index >= VFIO_PCI_NUM_IRQS || hdr.count >= 0xffff_ffff - hdr.start ||
      hdr.flags & ~(VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK)) {
    fail('EINVAL', 'bad argsz, index, count or flags');
  }
  if (hdr.start >= max || hdr.start + hdr.count > max) {
    fail('EINVAL', `vectors [${hdr.start}, +${hdr.count}) beyond the ${max} of index ${hdr.index}`);
  }
  const size = dataSize(hdr.flags);
  if (size && hdr.argsz - minsz < hdr.count * size) fail('EINVAL', `argsz too small for ${hdr.count} data elements`);
  const request: IrqRequest = { ...hdr, data: size ? user.read(minsz, hdr.count * size) : new Uint8Array(0) };
  const action = hdr.flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
  switch (hdr.index) {
    case VFIO_PCI_INTX_IRQ_INDEX:
      if (action === VFIO_IRQ_SET_ACTION_MASK || action === VFIO_IRQ_SET_ACTION_UNMASK || action === VFIO_IRQ_SET_ACTION_TRIGGER) {
        return setIntx(core, action, request);
      }
      break;
    case VFIO_PCI_MSI_IRQ_INDEX:
    case VFIO_PCI_MSIX_IRQ_INDEX:
      if (action === VFIO_IRQ_SET_ACTION_TRIGGER) return setMsi(core, request);
      break; // MSI masking is not exported by the PCI core: no handler
    default:
      if (action === VFIO_IRQ_SET_ACTION_TRIGGER) return setSingle(core, request);
  }
  return fail('ENOTTY', `no handler for action 0x${action.toString(16)} on IRQ index ${hdr.index}`);
}

function dataSize(flags: number): number {
  switch (flags & VFIO_IRQ_SET_DATA_TYPE_MASK) {
    case VFIO_IRQ_SET_DATA_NONE: return 0;
    case VFIO_IRQ_SET_DATA_BOOL: return 1;
    case VFIO_IRQ_SET_DATA_EVENTFD: return 4;
    default: return fail('EINVAL', 'exactly one data type must be given');
  }
}
