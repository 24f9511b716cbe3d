// What the in-kernel PICs, IOAPIC and PIT may hold, checked before any of it reaches KVM.
// KVM_SET_IRQCHIP and KVM_SET_PIT2 copy what they are given without a look (a PIC mid-way
// through an init sequence that never was, an IOAPIC whose base is not where KVM answers, a
// PIT counter in mode 9 would each misbehave silently in the guest): the record's values must
// be ones the kernel's own models can reach.

import {
  KVM_IOAPIC_NUM_PINS, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_PIT_FLAGS_HPET_LEGACY,
  KVM_PIT_FLAGS_SPEAKER_DATA_ON, kvm_ioapic_state, kvm_irqchip, kvm_pic_state, kvm_pit_state2,
} from '@vmmkit/core/uapi';

/** The chips of the in-kernel irqchip, by the record's section names. */
export const IRQCHIPS = {
  PIC_MASTER: KVM_IRQCHIP_PIC_MASTER,
  PIC_SLAVE: KVM_IRQCHIP_PIC_SLAVE,
  IOAPIC: KVM_IRQCHIP_IOAPIC,
} as const;
export type IrqchipName = keyof typeof IRQCHIPS;

/** KVM's IOAPIC answers MMIO at this address only: its region never moves, whatever SET_IRQCHIP says. */
export const KVM_IOAPIC_BASE = 0xfec0_0000n;
/** The IRR bits an IOAPIC of KVM_IOAPIC_NUM_PINS pins can have. */
const IOAPIC_IRR_MASK = 2 ** KVM_IOAPIC_NUM_PINS - 1;
/** The PIC flags that are booleans in the kernel's model. */
const PIC_FLAGS = ['read_reg_select', 'poll', 'special_mask', 'auto_eoi', 'rotate_on_auto_eoi', 'special_fully_nested_mode', 'init4'] as const;

/**
 * What is wrong with a kvm_irqchip carried as chip `name`, or undefined: its length, its chip
 * id, its padding, the union beyond the chip's own state (zero: GET_IRQCHIP leaves it as
 * given), and the chip's values.
 */
export function irqchipProblem(name: IrqchipName, bytes: Uint8Array): string | undefined {
  if (bytes.byteLength !== kvm_irqchip.size) return `${bytes.byteLength} bytes, a kvm_irqchip has ${kvm_irqchip.size}`;
  const chip = kvm_irqchip.decode(bytes);
  if (chip.chip_id !== IRQCHIPS[name]) return `chip id ${chip.chip_id}, ${name} is ${IRQCHIPS[name]}`;
  if (chip.pad !== 0) return `padding ${chip.pad} is not zero`;
  const union = kvm_irqchip.members.dummy;
  const own = name === 'IOAPIC' ? kvm_ioapic_state.size : kvm_pic_state.size;
  // An IOAPIC of more than KVM_IOAPIC_NUM_PINS pins would have written its extra redirection
  // entries here: refused rather than cut to 24.
  const beyond = bytes.subarray(union.offset + own, union.offset + union.size);
  const at = beyond.findIndex((b) => b !== 0);
  if (at >= 0) {
    return name === 'IOAPIC'
      ? `bytes after its ${KVM_IOAPIC_NUM_PINS} redirection entries (byte ${at} of the rest): an IOAPIC of more pins than KVM's`
      : `bytes after the PIC's state (byte ${at} of the rest)`;
  }
  return name === 'IOAPIC' ? ioapicProblem(chip.ioapic) : picProblem(chip.pic);
}

function picProblem(pic: ReturnType<typeof kvm_pic_state.decode>): string | undefined {
  for (const flag of PIC_FLAGS) if (pic[flag] > 1) return `${flag} is ${pic[flag]}, not 0 or 1`;
  if (pic.init_state > 3) return `init_state ${pic.init_state}: the ICW sequence has steps 0..3`;
  if (pic.priority_add > 7) return `priority_add ${pic.priority_add} is not an IRQ 0..7`;
  if ((pic.irq_base & 7) !== 0) return `irq_base 0x${pic.irq_base.toString(16)}: ICW2 keeps its low 3 bits clear`;
  if ((pic.elcr & ~pic.elcr_mask) !== 0) return `elcr 0x${pic.elcr.toString(16)} sets IRQs outside its mask 0x${pic.elcr_mask.toString(16)}`;
  return undefined;
}

function ioapicProblem(ioapic: ReturnType<typeof kvm_ioapic_state.decode>): string | undefined {
  if (ioapic.base_address !== KVM_IOAPIC_BASE) return `base 0x${ioapic.base_address.toString(16)}: KVM's IOAPIC answers at 0x${KVM_IOAPIC_BASE.toString(16)} only`;
  if (ioapic.pad !== 0) return `padding ${ioapic.pad} is not zero`;
  if (ioapic.id > 0xff) return `id ${ioapic.id} is not an APIC id`;
  if ((ioapic.irr & ~IOAPIC_IRR_MASK) !== 0) return `IRR 0x${ioapic.irr.toString(16)} has pins beyond ${KVM_IOAPIC_NUM_PINS}`;
  return undefined;
}

/** The counter modes of an 8254, and 0xff: a counter never programmed since reset (KVM's). */
const PIT_MODES = new Set([0, 1, 2, 3, 4, 5, 0xff]);

/** What is wrong with a kvm_pit_state2, or undefined. */
export function pitProblem(bytes: Uint8Array): string | undefined {
  if (bytes.byteLength !== kvm_pit_state2.size) return `${bytes.byteLength} bytes, a kvm_pit_state2 has ${kvm_pit_state2.size}`;
  const pit = kvm_pit_state2.decode(bytes);
  const known = KVM_PIT_FLAGS_HPET_LEGACY | KVM_PIT_FLAGS_SPEAKER_DATA_ON;
  if ((pit.flags & ~known) !== 0) return `flags 0x${pit.flags.toString(16)} has bits KVM does not know`;
  if (pit.reserved.some((r) => r !== 0)) return 'reserved words are not zero';
  for (const [i, c] of pit.channels.entries()) {
    // A count of 0 loads as 65536: the kernel keeps the latter.
    if (c.count > 0x1_0000) return `channel ${i}: count ${c.count} is more than 65536`;
    if (!PIT_MODES.has(c.mode)) return `channel ${i}: mode ${c.mode} is not an 8254 mode`;
    if (c.rw_mode > 3) return `channel ${i}: rw_mode ${c.rw_mode} is not 0..3`;
    // Access states: LSB, MSB, word LSB first, word MSB next (1..4), 0 before any write.
    if (c.read_state > 4 || c.write_state > 4) return `channel ${i}: access state ${c.read_state}/${c.write_state} is not 0..4`;
    // A latched count remembers the access mode it is read back in (the kernel stores rw_mode).
    if (c.count_latched > 3) return `channel ${i}: count_latched ${c.count_latched} is not 0..3`;
    for (const flag of ['bcd', 'gate', 'status_latched'] as const) {
      if (c[flag] > 1) return `channel ${i}: ${flag} is ${c[flag]}, not 0 or 1`;
    }
  }
  return undefined;
}
