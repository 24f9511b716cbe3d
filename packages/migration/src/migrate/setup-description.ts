// The SETUP record: what the source says about its VM (RAM layout, the devices whose state
// travels), and the destination's check that its own VM matches, refusing with the first
// difference named.

import { isVfioVmmDevice, vfioMigrationVerdict, type Vmm, type VmmDevice } from '@vmmkit/core';
import { MigrationRefusedError } from '../migration-errors.js';

/** One device whose state travels: by its index in the stream. */
export interface SetupDevice {
  readonly id: string;
  readonly driver: string;
  /** Its host device migrates through VFIO migration v2. */
  readonly vfio: boolean;
  /** It has emulated state (saveState). */
  readonly state: boolean;
}

/** The SETUP record's JSON. */
export interface SetupDescription {
  readonly vm: string;
  readonly pageSize: number;
  readonly ram: readonly { readonly name: string; readonly gpa: string; readonly size: string }[];
  readonly devices: readonly SetupDevice[];
  /** RAM channels beside the main stream (absent: none). */
  readonly channels?: number;
}

/** The devices of `vmm` whose state a migration carries, in stream order. */
export function migratingDevices(vmm: Vmm): VmmDevice[] {
  return vmm.devices.filter((d) => isVfioVmmDevice(d) || d.saveState !== undefined);
}

/** Describe the source VM, and the RAM channels the migration uses beside the main stream. */
export function describeSetup(vmm: Vmm, channels = 0): SetupDescription {
  return {
    ...(channels > 0 ? { channels } : {}),
    vm: vmm.name,
    pageSize: vmm.memory.pageSize,
    ram: vmm.memory.blocks.map((b) => ({ name: b.name, gpa: hex(b.gpa), size: hex(b.size) })),
    devices: migratingDevices(vmm).map((d) => ({ id: d.id, driver: d.driver, vfio: isVfioVmmDevice(d), state: d.saveState !== undefined })),
  };
}

/**
 * Check the source's description against the destination VM; returns the destination's
 * devices in stream order.
 * @throws MigrationRefusedError naming the first thing that differs.
 */
export function matchSetup(vmm: Vmm, json: unknown, channels = 0): VmmDevice[] {
  const setup = parse(json);
  if ((setup.channels ?? 0) !== channels) refuse(`the source sends RAM over ${setup.channels ?? 0} channel(s) beside the main stream, this destination has ${channels}`);
  if (setup.pageSize !== vmm.memory.pageSize) refuse(`the source migrates ${setup.pageSize}-byte pages, this host has ${vmm.memory.pageSize}-byte pages`);
  const blocks = vmm.memory.blocks;
  if (setup.ram.length !== blocks.length) refuse(`the source has ${setup.ram.length} RAM blocks, this VM ${blocks.length}`);
  setup.ram.forEach((r, i) => {
    const b = blocks[i]!;
    if (r.name !== b.name || r.gpa !== hex(b.gpa) || r.size !== hex(b.size)) {
      refuse(`RAM block ${i}: the source has '${r.name}' at ${r.gpa} of ${r.size} bytes, this VM '${b.name}' at ${hex(b.gpa)} of ${hex(b.size)} bytes`);
    }
  });
  const devices = setup.devices.map((s) => {
    const d = vmm.device(s.id);
    if (!d) refuse(`device '${s.id}' (${s.driver}) of the source does not exist here`);
    if (d.driver !== s.driver) refuse(`device '${s.id}' is a ${s.driver} on the source, a ${d.driver} here`);
    if (s.vfio !== isVfioVmmDevice(d) || s.state !== (d.saveState !== undefined)) refuse(`device '${s.id}' does not migrate the same way on both sides`);
    if (isVfioVmmDevice(d)) {
      const blocker = vfioMigrationVerdict(d.vfio).blocker;
      if (blocker) refuse(`device '${s.id}' cannot take a migration here: ${blocker}`);
    }
    return d;
  });
  const extra = migratingDevices(vmm).find((d) => !setup.devices.some((s) => s.id === d.id));
  if (extra) refuse(`device '${extra.id}' (${extra.driver}) has no state in the migration`);
  return devices;
}

function parse(json: unknown): SetupDescription {
  const o = json as Partial<SetupDescription> | null;
  const ok = typeof o === 'object' && o !== null && typeof o.vm === 'string' && typeof o.pageSize === 'number' &&
    Array.isArray(o.ram) && o.ram.every((r) => typeof r?.name === 'string' && typeof r.gpa === 'string' && typeof r.size === 'string') &&
    Array.isArray(o.devices) && o.devices.every((d) => typeof d?.id === 'string' && typeof d.driver === 'string' && typeof d.vfio === 'boolean' && typeof d.state === 'boolean') &&
    (o.channels === undefined || Number.isSafeInteger(o.channels));
  if (!ok) refuse('the SETUP record does not describe a VM');
  return o as SetupDescription;
}

function refuse(reason: string): never {
  throw new MigrationRefusedError(reason);
}

const hex = (n: bigint): string => `0x${n.toString(16)}`;
