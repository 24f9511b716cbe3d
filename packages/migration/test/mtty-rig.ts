// Rig for the VfioMigration suites on Linux's mtty sample mdev: the hosts (SimHost with its mtty
// model, LinuxHost with the kernel tier's two mtty mdevs), a VMM per mdev with the device realized
// through vfio-pci on either backend, and a guest driver's view of the serial port through its I/O BAR.

import { LinuxHost, Vmm, deviceFeature, type HostKernel } from '@vmmkit/core';
import {
  VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_RESET, VFIO_DEVICE_STATE_RUNNING as
  RUNNING, vfio_device_feature_mig_state,
} from '@vmmkit/core/uapi';
import { realMttyMdevs } from '@vmmkit/core/testing';
import { iommufdPlugin } from '@vmmkit/backend-iommufd';
import { legacyType1Plugin } from '@vmmkit/backend-legacy-type1';
import { vfioPciPlugin, type VfioPciDevice } from '@vmmkit/device-vfio-pci';
import {
  SimHost, UART_IER, UART_IIR, UART_LCR, UART_LSR, UART_MCR, UART_MSR, UART_RX, UART_SCR,
} from '@vmmkit/sim';
import { migrationPlugin, VfioMigration, type DeviceStateChange } from '../src/index.js';
import { concat } from './vfio-migration-harness.js';

const SIM_MDEVS = ['c0ffee00-0000-4000-8000-00000000a001', 'c0ffee00-0000-4000-8000-00000000a002'] as const;
const FCR = UART_IIR; // the FIFO control register is written where IIR is read
const FCR_ENABLE_CLEAR = 0x07;
const LCR_8N1 = 0x03;
const LCR_DLAB = 0x80;

/** The VFIO backend a VMM attaches the mdev through: iommufd (its cdev) or legacy type1 (its group). */
export type Backend = 'iommufd' | 'legacy';
export const BACKENDS: readonly Backend[] = ['iommufd', 'legacy'];

/** A host the suite runs on, with two mtty mdevs (a source and a destination). */
export interface MttyTarget {
  readonly name: 'SimHost' | 'LinuxHost';
  /** Why this host cannot run the suite here, if it cannot. */
  readonly unavailable?: string;
  readonly uuids: readonly string[];
  host(): HostKernel;
}

let linux: LinuxHost | undefined;

/** SimHost always; LinuxHost where the kernel tier made two mtty mdevs. */
export function mttyTargets(): MttyTarget[] {
  const real = realMttyMdevs(2);
  return [
    {
      name: 'SimHost', uuids: SIM_MDEVS,
      // mtty has DMA logging ops (that log nothing: it does no DMA), so migration can track it.
      host: () => new SimHost({
        devices: SIM_MDEVS.map((uuid) => ({ uuid, model: 'mtty', migration: { flags: ['STOP_COPY', 'P2P', 'PRE_COPY'], dmaLogging: true } })),
      }),
    },
    { name: 'LinuxHost', unavailable: real.unavailable, uuids: real.uuids, host: () => (linux ??= new LinuxHost()) },
  ];
}

/** The suite's title on a target: the host's name, and the reason when it is skipped. */
export function onTarget(title: string, target: MttyTarget): string {
  return `${title} (${target.name}${target.unavailable ? `; skipped: ${target.unavailable}` : ''})`;
}

/** A VMM with one mtty mdev realized through vfio-pci, and a VfioMigration on it. */
export interface MttyVm {
  readonly vmm: Vmm;
  readonly dev: VfioPciDevice;
  readonly mig: VfioMigration;
  /** The migration state the device was found in at open, before the reset to RUNNING. */
  readonly stateAtOpen: number;
  /** 'migration:device-state' events, as `FROM>TO`. */
  readonly changes: string[];
  readonly warnings: string[];
  /** The migration state the kernel reports (VFIO_DEVICE_FEATURE GET MIG_DEVICE_STATE). */
  kernelState(): number;
  /** cleanup(), then close the VMM. */
  close(): Promise<void>;
}

/**
 * Realize mdev `uuid` in a new VMM (`id=serial0`, so that two VMs match for migrate()). mtty
 * keeps its migration state across a close, so a device an earlier run left elsewhere is reset
 * to RUNNING first, where VfioMigration starts.
 */
export async function mttyVm(host: HostKernel, uuid: string, options: { backend?: Backend; incoming?: boolean; chunkSize?: number } = {}): Promise<MttyVm> {
  const vmm = await Vmm.create({
    host, plugins: [legacyType1Plugin(), iommufdPlugin(), vfioPciPlugin(), migrationPlugin()], memory: [{ gpa: 0n, size: 16n << 20n, name: 'ram' }],
    incoming: options.incoming,
  });
  vmm.addObject('iommufd,id=iommufd0');
  const backend = options.backend === 'legacy' ? '' : ',iommufd=iommufd0';
  const dev = (await vmm.addDevice(`vfio-pci,id=serial0,sysfsdev=/sys/bus/mdev/devices/${uuid}${backend}`)) as VfioPciDevice;
  const kernelState = () => migState(host, dev.vfio.fd);
  const stateAtOpen = kernelState();
  if (stateAtOpen !== RUNNING) host.ioctl(dev.vfio.fd, VFIO_DEVICE_RESET);
  const changes: string[] = [];
  const warnings: string[] = [];
  vmm.events.on('migration:device-state', (e: DeviceStateChange) => changes.push(`${e.from}>${e.to}`));
  vmm.events.on('vfio:warning', (e) => warnings.push(e.message));
  const mig = new VfioMigration(dev.vfio, vmm.events, { chunkSize: options.chunkSize });
  const close = async () => {
    mig.cleanup();
    await vmm.close();
  };
  return { vmm, dev, mig, stateAtOpen, changes, warnings, kernelState, close };
}

function migState(host: HostKernel, fd: number): number {
  const out = deviceFeature(host, fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, vfio_device_feature_mig_state.encode({ data_fd: -1 }));
  return vfio_device_feature_mig_state.get(out, 'device_state');
}

/** What a guest's driver sets up on a port: line settings, interrupts, scratch, and bytes sent. */
export interface PortSetup {
  readonly divisor: number;
  readonly ier: number;
  readonly mcr: number;
  readonly scr: number;
  /** Transmitted into the loopback FIFO (at most 16). */
  readonly sent: readonly number[];
}

const read = async (d: VfioPciDevice, reg: number): Promise<number> => Number(await d.barRead(0, reg, 1));
const write = (d: VfioPciDevice, reg: number, value: number): Promise<void> => d.barWrite(0, reg, 1, BigInt(value));

/**
 * Program port 0 as a guest driver would: FIFOs enabled and cleared, interrupts, modem control,
 * scratch, bytes sent; the divisor last, leaving DLAB set (mtty zeroes the divisor whenever
 * DLAB is set, so it can be read back only while DLAB stays set).
 */
export async function programPort(d: VfioPciDevice, p: PortSetup): Promise<void> {
  await write(d, UART_LCR, LCR_8N1);
  await write(d, FCR, FCR_ENABLE_CLEAR);
  await write(d, UART_IER, p.ier);
  await write(d, UART_MCR, p.mcr);
  await write(d, UART_SCR, p.scr);
  for (const byte of p.sent) await write(d, UART_RX, byte);
  await write(d, UART_LCR, LCR_8N1 | LCR_DLAB);
  await write(d, UART_RX, p.divisor & 0xff);
  await write(d, UART_IER, p.divisor >> 8);
}

/** What the device exposes of port 0's state, read as a driver would; this drains the FIFO. */
export async function readPort(d: VfioPciDevice): Promise<{ lcr: number; divisor: number; ier: number; iir: number; mcr: number; msr: number; scr: number; lsr: number; received: number[] }> {
  const lcr = await read(d, UART_LCR);
  const divisor = lcr & LCR_DLAB ? (await read(d, UART_RX)) | ((await read(d, UART_IER)) << 8) : -1;
  await write(d, UART_LCR, lcr & ~LCR_DLAB);
  const state = {
    lcr, divisor, ier: await read(d, UART_IER), iir: await read(d, UART_IIR), mcr: await read(d, UART_MCR), msr: await read(d, UART_MSR),
    scr: await read(d, UART_SCR), lsr: await read(d, UART_LSR),
  };
  const received: number[] = [];
  for (let i = 0; i < 16 && (await read(d, UART_LSR)) & 0x01; i++) received.push(await read(d, UART_RX));
  return { ...state, received };
}

/** Read the data fd to its end ('end') or its temporary end ('empty'), copying the chunks. */
export async function drain(mig: VfioMigration): Promise<{ bytes: Uint8Array; until: 'empty' | 'end' }> {
  const chunks: Uint8Array[] = [];
  for (;;) {
    const got = await mig.readChunk();
    if (got === 'empty' || got === 'end') return { bytes: concat(chunks), until: got };
    chunks.push(got.slice());
  }
}
