// The VM's PCI host bridge as its vCPUs reach it: configuration mechanism #1 (the address
// register at port 0xcf8, the data window at 0xcfc-0xcff) onto the config space of the PCI
// functions on the VM's bus 0, the bridge's own function in slot 0, and the BARs the guest
// programmed, decoded to the functions' BAR reads and writes (trapped: every access is an exit),
// except what a BAR follower (BarMappings: KVM memslots and ioeventfds) serves without exits.

import type { PciBus } from '@vmmkit/core';
import { PCI_BASE_ADDRESS_0, PCI_COMMAND, PCI_ROM_ADDRESS } from '@vmmkit/core/uapi';
import type { GuestAccess, IoBus } from '../vcpu/io-handler.js';
import type { BarFollower } from './bar-mappings.js';
import { BarWindows } from './bar-windows.js';

/** CONFIG_ADDRESS and CONFIG_DATA of mechanism #1. */
export const PCI_CONFIG_ADDRESS_PORT = 0xcf8;
export const PCI_CONFIG_DATA_PORT = 0xcfc;
const CONFIG_ENABLE = 0x8000_0000;

/**
 * The bridge's own config space (00:00.0): a host bridge (class 06.00) with QEMU q35's IDs so
 * a guest that scans the bus recognizes it; it has no BARs and ignores writes.
 */
function hostBridgeConfig(): Uint8Array {
  const c = new Uint8Array(256);
  const dv = new DataView(c.buffer);
  dv.setUint16(0x00, 0x8086, true); // Intel
  dv.setUint16(0x02, 0x29c0, true); // 82G33/G31/P35/P31 (QEMU's q35 MCH)
  dv.setUint16(0x06, 0x0000, true);
  dv.setUint32(0x08, 0x0600_0000, true); // class 06.00.00, revision 0
  return c;
}

export class PciHostBridge {
  /** What the guest last wrote to CONFIG_ADDRESS. */
  #address = 0;
  readonly #own = hostBridgeConfig();
  /** The BARs the guest programmed. */
  readonly windows: BarWindows;
  readonly #detach: (() => void)[] = [];

  /**
   * `follower`, if any, hears every new reading of the BAR windows (only BARs of functions still
   * on the bus) and every function unplugged, before the function is unrealized.
   */
  constructor(private readonly bus: PciBus, io: IoBus, private readonly follower?: BarFollower) {
    this.windows = new BarWindows(bus, follower && ((windows) => follower.follow(windows.filter((w) => bus.function(w.slot) === w.fn))));
    if (follower) {
      this.#detach.push(bus.onUnplug((fn) => {
        this.windows.invalidate();
        follower.forget(fn);
      }));
    }
    this.#detach.push(
      io.addPorts(PCI_CONFIG_ADDRESS_PORT, 8, (a) => this.#config(a)),
      io.addDecoder('mmio', (a) => this.windows.decode('mem', a)),
      io.addDecoder('pio', (a) => this.windows.decode('io', a)),
    );
  }

  /**
   * Re-read where BARs are before the next access: after the functions' config space changed
   * other than through the guest's config cycles (restored by a migration, a device plugged).
   */
  invalidate(): void {
    // Lazily: the next access that exits, or config write that touches a BAR, reads them (and the
    // follower moves what it mapped then). A function unplugged has its mappings gone already.
    this.windows.invalidate();
  }

  /**
   * Give the ports and decoders back to the bus, and let the follower unmap everything.
   * @throws the follower's first failure (after everything else was given back).
   */
  detach(): void {
    for (const d of this.#detach.splice(0)) d();
    this.follower?.close();
  }

  /** Read the BARs again now; a function that cannot be read is asked again at the next access. */
  async #reread(): Promise<void> {
    await this.windows.current().catch(() => undefined);
  }

  async #config(a: GuestAccess): Promise<void> {
    const port = Number(a.addr);
    const dv = new DataView(a.data.buffer, a.data.byteOffset, a.data.byteLength);
    for (let i = 0; i < a.count; i++) {
      const at = i * a.size;
      if (port === PCI_CONFIG_ADDRESS_PORT && a.size === 4) {
        // Only a dword access reaches CONFIG_ADDRESS (narrower ones are other chipset registers).
        if (a.write) this.#address = dv.getUint32(at, true) & 0x80ff_fffc;
        else dv.setUint32(at, this.#address >>> 0, true);
      } else if (port >= PCI_CONFIG_DATA_PORT) {
        await this.#data(port - PCI_CONFIG_DATA_PORT, a, dv, at);
      } else if (!a.write) {
        a.data.fill(0xff, at, at + a.size);
      }
    }
  }

  /** An access to CONFIG_DATA at byte `lane` of the dword CONFIG_ADDRESS selects. */
  async #data(lane: number, a: GuestAccess, dv: DataView, at: number): Promise<void> {
    const size = a.size as 1 | 2 | 4;
    const address = this.#address;
    const bus = (address >>> 16) & 0xff;
    const slot = (address >>> 11) & 0x1f;
    const fn = (address >>> 8) & 0x7;
    const offset = (address & 0xfc) + lane;
    const target = address & CONFIG_ENABLE && bus === 0 && fn === 0 && offset % size === 0 && lane + size <= 4 ? slot : -1;
    const device = target > 0 ? this.bus.function(target) : undefined;
    if (a.write) {
      if (!device) return; // no function (or the bridge's own, read-only): the write goes nowhere
      await device.configWrite(offset, size, readValue(dv, at, size));
      if (touches(offset, size, PCI_COMMAND, 2) || touches(offset, size, PCI_BASE_ADDRESS_0, 24) || touches(offset, size, PCI_ROM_ADDRESS, 4)) {
        this.windows.invalidate();
        // The guest's next access must find the BAR where it now is: what the follower maps
        // moves before this exit completes.
        if (this.follower) await this.#reread();
      }
      return;
    }
    let value: number;
    if (device) value = await device.configRead(offset, size);
    else if (target === 0) value = readValue(new DataView(this.#own.buffer), offset, size);
    else value = 0xffff_ffff; // master abort: nothing answers
    writeValue(dv, at, size, value);
  }
}

function touches(offset: number, size: number, start: number, length: number): boolean {
  return offset < start + length && offset + size > start;
}

function readValue(dv: DataView, at: number, size: number): number {
  return size === 1 ? dv.getUint8(at) : size === 2 ? dv.getUint16(at, true) : dv.getUint32(at, true);
}

function writeValue(dv: DataView, at: number, size: number, v: number): void {
  if (size === 1) dv.setUint8(at, v & 0xff);
  else if (size === 2) dv.setUint16(at, v & 0xffff, true);
  else dv.setUint32(at, v >>> 0, true);
}
