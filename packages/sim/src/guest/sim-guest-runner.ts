// A simulated guest driven by timers for demos: a SimGuest storing into RAM at a rate per second of
// wall time, its nics receiving traffic, pausing while the VM does not run, as vCPUs do.

import type { Vmm } from '@vmmkit/core';
import type { SimHost } from '../sim-host.js';
import { SIM_GUEST_RING, SimGuest, nicRingsAt } from './sim-guest.js';
import type { SimNicFunction } from './sim-nic-driver.js';

const TICK_MS = 5;
// A tick after a long stall covers at most this much time (a burst, not a flood).
const MAX_TICK_MS = 100;
/** Where the timed guest's rings start in guest memory: 16 MiB, one 512 KiB ring after another. */
export const TIMED_GUEST_RING_BASE = 0x100_0000n;
const TIMED_GUEST_RING_SLOTS = 256;

export interface SimGuestRunnerOptions {
  /** Bytes the vCPUs write per second of wall time, in 64-byte stores at random places. Default 4 MiB. */
  readonly writeBytesPerSecond?: number;
}

export class SimGuestRunner {
  #timer: NodeJS.Timeout | undefined;
  /** The drivers are returning slots (asynchronous device accesses): ticks meanwhile only store. */
  #returning = false;

  /** Run `guest` at the options' rate. */
  constructor(
    readonly guest: SimGuest,
    private readonly options: SimGuestRunnerOptions = {},
  ) {}

  /** A freshly booted guest: its drivers set the nics up, then it works (on timers). */
  async start(): Promise<void> {
    await this.guest.setUpNics();
    this.resume();
  }

  /**
   * The guest works on without setting anything up: a migrated guest, whose drivers' setup
   * arrived with the device state. Nothing happens when it already works.
   */
  resume(): void {
    if (this.#timer) return;
    // Timers fire late and coalesce while the event loop is busy (a migration pass, say): each
    // tick covers the wall time since the last, so the rates hold per second of wall time.
    let last = performance.now();
    this.#timer = setInterval(() => {
      const now = performance.now();
      this.tick(Math.min(now - last, MAX_TICK_MS));
      last = now;
    }, TICK_MS);
  }

  /** Stop the timers (the guest's state stays as it is). */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** `ms` of guest time at the options' rate: vCPU stores, nic traffic, the drivers returning slots. */
  tick(ms: number): void {
    this.guest.run(ms, Math.ceil(((this.options.writeBytesPerSecond ?? 4 << 20) * ms) / 1000 / 64));
    if (this.#returning || !this.guest.running) return;
    this.#returning = true;
    // A device that fails under the guest (its server gone, say) is the VMM's to report; the
    // guest goes on storing, as vCPUs do while a device does not answer.
    void this.guest.returnSlots().catch(() => undefined).finally(() => {
      this.#returning = false;
    });
  }
}

export interface TimedGuestOptions extends SimGuestRunnerOptions {
  /** Packets per second each nic receives (2 KiB each). Default 20000. */
  readonly packetsPerSecond?: number;
  /** Seed of the writers' pseudo-random places and bytes. */
  readonly seed?: number;
  /** The working set, as a fraction of each RAM block (what SimGuest.populate fills). Default 1. */
  readonly workingSet?: number;
}

/**
 * The demos' guest of `vmm` on `host`: each of `nics` gets a 512 KiB ring (256 slots of 2 KiB) from
 * {@link TIMED_GUEST_RING_BASE} up, and the guest runs on timers once started.
 */
export function timedGuest(vmm: Vmm, host: SimHost, nics: readonly SimNicFunction[], options: TimedGuestOptions = {}): SimGuestRunner {
  const ring = { slots: TIMED_GUEST_RING_SLOTS, packetsPerSecond: options.packetsPerSecond ?? SIM_GUEST_RING.packetsPerSecond };
  const guest = new SimGuest(vmm, host, nicRingsAt(TIMED_GUEST_RING_BASE, nics, ring), { ring, seed: options.seed, workingSet: options.workingSet });
  return new SimGuestRunner(guest, options);
}
