// VfioMigration on Linux's mtty sample mdev, the same program on SimHost's mtty model and, in the
// kernel tier, on the real kernel, with the mdev attached through iommufd and through legacy
// type1: every arc the device offers (with the kernel's next hops), precopy info and the
// stop-copy size, a save on one mdev loaded into the other and checked by the serial port's
// registers, early closes of the data fd, a refused arc, recovery, and a live migration of a VM
// with the device by migrate().

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HostError, VfioError, type HostKernel } from '@vmmkit/core';
import {
  VFIO_DEVICE_STATE_ERROR as ERROR, VFIO_DEVICE_STATE_PRE_COPY as PRE_COPY, VFIO_DEVICE_STATE_PRE_COPY_P2P as
  PRE_COPY_P2P, VFIO_DEVICE_STATE_RESUMING as RESUMING, VFIO_DEVICE_STATE_RUNNING as RUNNING,
  VFIO_DEVICE_STATE_RUNNING_P2P as RUNNING_P2P, VFIO_DEVICE_STATE_STOP as STOP, VFIO_DEVICE_STATE_STOP_COPY as
  STOP_COPY, VFIO_MIGRATION_P2P, VFIO_MIGRATION_PRE_COPY, VFIO_MIGRATION_STOP_COPY,
} from '@vmmkit/core/uapi';
import type { VfioPciInterrupt } from '@vmmkit/device-vfio-pci';
import { SimHost, type SimCensus } from '@vmmkit/sim';
import { migrate, migStateName } from '../src/index.js';
import { BACKENDS, drain, mttyTargets, mttyVm, onTarget, programPort, readPort, type Backend, type MttyTarget, type MttyVm, type PortSetup } from './mtty-rig.js';

/** mtty_data_size for one port: the 24-byte header, then struct serial_port (36 bytes). */
const STREAM_SIZE = 60;
const HEADER_SIZE = 24;
const SETUP: PortSetup = { divisor: 0x010c, ier: 0x05, mcr: 0x0b, scr: 0x5a, sent: [...'vmmkit'].map((c) => c.charCodeAt(0)) };
/** What the port exposes after SETUP: LCR 8N1 with DLAB, IIR with received data pending, CTS/DSR/DCD, data ready. */
const EXPOSED = { lcr: 0x83, divisor: 0x010c, ier: 0x05, iir: 0xc4, mcr: 0x0b, msr: 0xb3, scr: 0x5a, lsr: 0x01, received: SETUP.sent };

function describeMtty(target: MttyTarget, backend: Backend): void {
  describe.skipIf(target.unavailable !== undefined)(onTarget(`VfioMigration on the mtty mdev, ${backend} backend`, target), () => {
    let host: HostKernel;
    let baseline: SimCensus | undefined;
    let src: MttyVm;
    let dst: MttyVm;
    beforeEach(async () => {
      host = target.host();
      baseline = host instanceof SimHost ? host.census() : undefined;
      src = await mttyVm(host, target.uuids[0]!, { backend, chunkSize: 16 });
      dst = await mttyVm(host, target.uuids[1]!, { backend, chunkSize: 16 });
    });
    afterEach(async () => {
      // Leave both devices RUNNING for the next test: mtty keeps its migration state across a close.
      for (const vm of [src, dst]) await vm.mig.resumeRunning();
      await src.close();
      await dst.close();
      await new Promise((resolve) => setImmediate(resolve));
      if (host instanceof SimHost) expect(host.census()).toEqual(baseline); // no data fd or other object left
    });

    /** Save the source from PRE_COPY through STOP_COPY, as a migration does; returns the whole stream. */
    async function saveSource(): Promise<Uint8Array> {
      await src.mig.saveSetup();
      const initial = await drain(src.mig);
      await src.mig.prepareSwitchover();
      await src.mig.switchover();
      const final = await drain(src.mig);
      await src.mig.saveCleanup();
      return Uint8Array.from([...initial.bytes, ...final.bytes]);
    }

    it('offers STOP_COPY, P2P and PRE_COPY and takes every arc, the kernel walking the next hops of combined requests', async () => {
      const { mig } = src;
      expect(src.dev.vfio.migrationFlags).toBe(VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY);
      expect([mig.precopySupported, mig.p2pSupported, mig.state, src.kernelState()]).toEqual([true, true, RUNNING, RUNNING]);
      let stream: Uint8Array = new Uint8Array(0);
      // [target, what happens to the data fd]: every arc of vfio_mig_get_next_state's table for
      // a device with all three flags, then requests the kernel splits into several arcs.
      const walk: [number, 'new' | 'same' | 'none', (() => Promise<unknown>)?][] = [
        [RUNNING_P2P, 'none'], [RUNNING, 'none'], [PRE_COPY, 'new'], [PRE_COPY_P2P, 'same'], [PRE_COPY, 'same'],
        [RUNNING, 'none'], [RUNNING_P2P, 'none'], [PRE_COPY_P2P, 'new'], [RUNNING_P2P, 'none'], [STOP, 'none'],
        [RUNNING_P2P, 'none'], [PRE_COPY_P2P, 'new'], [STOP_COPY, 'same', async () => (stream = (await drain(mig)).bytes)], [STOP, 'none'],
        [STOP_COPY, 'new', async () => expect((await drain(mig)).bytes).toEqual(stream)], [STOP, 'none'],
        [RESUMING, 'new', async () => await mig.writeChunk(stream)], [STOP, 'none'], [RUNNING_P2P, 'none'], [RUNNING, 'none'],
        // RUNNING → RUNNING_P2P → STOP → STOP_COPY; STOP_COPY → STOP → RUNNING_P2P → RUNNING.
        [STOP_COPY, 'new', async () => expect((await drain(mig)).until).toBe('end')], [RUNNING, 'none'],
        // RUNNING → PRE_COPY; PRE_COPY → PRE_COPY_P2P → STOP_COPY on the same session.
        [PRE_COPY, 'new'], [STOP_COPY, 'same', async () => expect((await drain(mig)).bytes.byteLength).toBe(STREAM_SIZE)],
        // STOP_COPY → STOP → RESUMING; RESUMING → STOP (the state loads) → RUNNING_P2P → RUNNING.
        [RESUMING, 'new', async () => await mig.writeChunk(stream)], [RUNNING, 'none'],
      ];
      const expected: string[] = [];
      for (const [state, fd, then] of walk) {
        const before = mig.dataFd;
        expected.push(`${migStateName(mig.state)}>${migStateName(state)}`);
        await mig.setState(state, mig.state);
        expect([migStateName(mig.state), migStateName(src.kernelState())]).toEqual([migStateName(state), migStateName(state)]);
        if (fd === 'none') expect(mig.dataFd).toBe(-1);
        else if (fd === 'same') expect(mig.dataFd).toBe(before);
        else expect(mig.dataFd).toBeGreaterThanOrEqual(0);
        await then?.();
      }
      expect(stream.byteLength).toBe(STREAM_SIZE);
      expect(src.changes).toEqual(expected);
      expect(src.warnings).toEqual([]);
    });

    it('reports precopy info and the stop-copy size: the header in PRE_COPY, the port in STOP_COPY', async () => {
      const { mig } = src;
      await programPort(src.dev, SETUP);
      expect(await mig.stopCopySize()).toBe(BigInt(STREAM_SIZE));
      expect(await mig.precopyInfo()).toEqual({ initialBytes: 0n, dirtyBytes: 0n }); // not precopying: no ioctl
      await mig.saveSetup();
      expect(await mig.precopyInfo()).toEqual({ initialBytes: BigInt(HEADER_SIZE), dirtyBytes: 0n });
      const first = await mig.readChunk();
      expect(first instanceof Uint8Array && first.byteLength).toBe(16); // one chunk of chunkSize
      expect(await mig.precopyInfo()).toEqual({ initialBytes: BigInt(HEADER_SIZE - 16), dirtyBytes: 0n });
      // mtty ends PRE_COPY's data for now with a read of 0 where the uAPI asks for ENOMSG, and
      // VfioMigration reports that as 'end'; the session carries on into STOP_COPY all the same.
      const header = await drain(mig);
      expect([header.bytes.byteLength, header.until]).toEqual([HEADER_SIZE - 16, 'end']);
      expect(await mig.precopyInfo()).toEqual({ initialBytes: 0n, dirtyBytes: 0n });
      await src.dev.barWrite(0, 7, 1, 0x77n); // the guest changes the port while it precopies: mtty tracks no dirty state
      expect(await mig.precopyInfo()).toEqual({ initialBytes: 0n, dirtyBytes: 0n });
      await mig.prepareSwitchover();
      expect(migStateName(mig.state)).toBe('PRE_COPY_P2P');
      expect(await mig.precopyInfo()).toEqual({ initialBytes: 0n, dirtyBytes: 0n });
      expect(await mig.stopCopySize()).toBe(BigInt(STREAM_SIZE));
      await mig.switchover();
      expect(await mig.precopyInfo()).toEqual({ initialBytes: 0n, dirtyBytes: 0n }); // STOP_COPY: no ioctl
      const rest = await drain(mig);
      expect([rest.bytes.byteLength, rest.until]).toEqual([STREAM_SIZE - HEADER_SIZE, 'end']);
      expect(rest.bytes[7]).toBe(0x77); // struct serial_port's uart_reg[UART_SCR], as it was at STOP_COPY
      expect(await mig.readChunk()).toBe('end');
      await mig.saveCleanup();
      expect([mig.state, mig.dataFd, src.kernelState()]).toEqual([STOP, -1, STOP]);
      expect(src.changes).toEqual(['RUNNING>PRE_COPY', 'PRE_COPY>PRE_COPY_P2P', 'PRE_COPY_P2P>STOP_COPY', 'STOP_COPY>STOP']);
    });

    it('saves the serial port on one mdev and loads it into the other, which exposes the same registers and FIFO', async () => {
      await programPort(dst.dev, { divisor: 1, ier: 0, mcr: 0, scr: 0x11, sent: [0x21] }); // something else to overwrite
      await programPort(src.dev, SETUP);
      const stream = await saveSource();
      expect(stream.byteLength).toBe(STREAM_SIZE);
      await dst.mig.loadSetup();
      expect([migStateName(dst.mig.state), dst.mig.dataFd >= 0]).toEqual(['RESUMING', true]);
      for (let at = 0; at < stream.byteLength; at += 7) await dst.mig.writeChunk(stream.subarray(at, at + 7)); // any segmentation
      await dst.mig.start();
      expect([dst.mig.state, dst.mig.dataFd, dst.kernelState()]).toEqual([RUNNING, -1, RUNNING]);
      expect(dst.changes).toEqual(['RUNNING>RESUMING', 'RESUMING>RUNNING_P2P', 'RUNNING_P2P>RUNNING']);
      expect(await readPort(dst.dev)).toEqual(EXPOSED);
      // The loaded device runs: enabling the transmitter-empty interrupt with the FIFO drained raises INTx.
      const irq = new Promise<VfioPciInterrupt>((resolve) => dst.dev.once('interrupt', resolve));
      await dst.dev.barWrite(0, 1, 1, 0x02n);
      expect(await irq).toMatchObject({ mode: 'intx', vector: 0 });
      await dst.dev.eoi();
      await src.mig.resumeRunning(); // the migration is called off: the source runs on, its port as it was
      expect(await readPort(src.dev)).toEqual(EXPOSED);
      expect([...src.warnings, ...dst.warnings]).toEqual([]);
    });

    it('carries on after the reader closes the data fd early: the kernel keeps the session until the state moves on', async () => {
      const { mig } = src;
      await programPort(src.dev, SETUP);
      await mig.switchover(); // RUNNING → STOP_COPY in one request opens the session
      const partial = await mig.readChunk();
      expect(partial instanceof Uint8Array && partial.byteLength).toBe(16);
      mig.cleanup(); // the reader gives up and closes its fd
      expect(mig.dataFd).toBe(-1);
      await expect(mig.readChunk()).rejects.toThrow(expect.objectContaining({ name: 'VfioError', errno: 'EBADF', device: target.uuids[0] }));
      expect(src.kernelState()).toBe(STOP_COPY); // closing the fd changed nothing in the device
      await mig.resumeRunning();
      expect([mig.state, src.kernelState()]).toEqual([RUNNING, RUNNING]);
      // A new save streams all of it again, from a new session.
      await mig.switchover();
      const again = await drain(mig);
      expect([again.bytes.byteLength, again.until]).toEqual([STREAM_SIZE, 'end']);
      // The loading side's writer closes early too: what it wrote does not load, and the device is reset.
      await dst.mig.loadSetup();
      await dst.mig.writeChunk(again.bytes.subarray(0, 40));
      dst.mig.cleanup();
      await expect(dst.mig.finishLoad()).rejects.toThrow(expect.objectContaining({ errno: 'EINVAL', message: expect.stringMatching(/did not load.*reset to RUNNING/) }));
      expect([dst.mig.state, dst.kernelState()]).toEqual([RUNNING, RUNNING]);
    });

    it('refuses an arc the state machine lacks with the kernel\'s EINVAL, and leaves the device where it was', async () => {
      const { mig } = src;
      await mig.switchover();
      const fd = mig.dataFd;
      // STOP_COPY → PRE_COPY is blocked by vfio_mig_get_next_state.
      const refused = await catchError(() => mig.setState(PRE_COPY, STOP_COPY));
      expect(refused).toMatchObject({ name: 'VfioError', errno: 'EINVAL', ioctl: 'VFIO_DEVICE_FEATURE', device: target.uuids[0] });
      expect(refused.message).toMatch(/set the migration state to PRE_COPY: the device was put back in STOP_COPY/);
      expect((refused.cause as HostError).errno).toBe('EINVAL');
      expect([mig.state, src.kernelState(), mig.dataFd]).toEqual([STOP_COPY, STOP_COPY, fd]);
      expect((await drain(mig)).bytes.byteLength).toBe(STREAM_SIZE); // the session is intact
      // ERROR can never be asked for, nor a state past the enum.
      for (const state of [ERROR, 8]) await expect(mig.setState(state, STOP_COPY)).rejects.toThrow(expect.objectContaining({ errno: 'EINVAL' }));
      expect(src.kernelState()).toBe(STOP_COPY);
      expect(src.warnings).toHaveLength(3);
      expect(src.changes).toEqual(['RUNNING>STOP_COPY']);
    });

    it('recovers a failed load: a bad header is refused (EFAULT), a short stream does not load, and abortLoad resets to RUNNING', async () => {
      await programPort(src.dev, SETUP);
      const stream = await saveSource();
      const { mig } = dst;
      await mig.loadSetup();
      const bad = stream.slice();
      bad[0]! ^= 0xff; // the magic
      await expect(mig.writeChunk(bad)).rejects.toThrow(expect.objectContaining({ errno: 'EFAULT' })); // mtty_resume_write's answer
      await expect(mig.writeChunk(new Uint8Array(STREAM_SIZE + 1))).rejects.toThrow(expect.objectContaining({ errno: 'ENOMEM' }));
      await mig.abortLoad();
      expect([mig.state, mig.dataFd, dst.kernelState()]).toEqual([RUNNING, -1, RUNNING]);
      await expect(mig.writeChunk(stream)).rejects.toThrow(/no data transfer session/);
      // A stream cut short: RESUMING → STOP fails in the kernel, and VfioMigration resets the device.
      await mig.setStateOrReset(STOP);
      await mig.loadSetup();
      await mig.writeChunk(stream.subarray(0, STREAM_SIZE - 1));
      await expect(mig.start()).rejects.toThrow(expect.objectContaining({ name: 'VfioError', message: expect.stringContaining('the device state did not load') }));
      expect([mig.state, mig.dataFd, dst.kernelState()]).toEqual([RUNNING, -1, RUNNING]);
      // The device is usable: the whole stream loads.
      await mig.setStateOrReset(STOP);
      await mig.loadSetup();
      await mig.writeChunk(stream);
      await mig.finishLoad();
      await mig.start();
      expect(await readPort(dst.dev)).toEqual(EXPOSED);
      expect(dst.changes).toEqual([
        'RUNNING>RESUMING', 'RESUMING>RUNNING', 'RUNNING>STOP', 'STOP>RESUMING', 'RESUMING>RUNNING',
        'RUNNING>STOP', 'STOP>RESUMING', 'RESUMING>STOP', 'STOP>RUNNING_P2P', 'RUNNING_P2P>RUNNING',
      ]);
    });

    it('live-migrates a VM with the mdev by migrate(): the destination VM\'s port and config space are the source\'s', async () => {
      await dst.close();
      dst = await mttyVm(host, target.uuids[1]!, { backend, incoming: true });
      await programPort(src.dev, SETUP);
      await src.dev.configWrite(0x3c, 1, 0x0a); // the interrupt line: config state vmmkit emulates and migrates
      src.vmm.memory.write(0x1000n, Uint8Array.of(1, 2, 3));
      const result = await migrate(src.vmm, dst.vmm);
      expect(result.containers).toEqual([
        expect.objectContaining({ backend: `vfio-iommu-${backend}`, strategy: 'device', devices: [target.uuids[0]], dirtyPages: 0 }),
      ]);
      expect(result.deviceBytes).toBeGreaterThanOrEqual(STREAM_SIZE);
      expect(dst.kernelState()).toBe(RUNNING);
      expect(migStateName(src.kernelState())).toBe('STOP'); // the source is paused with its VM
      expect((await dst.dev.configRead(0x3c, 1))).toBe(0x0a);
      expect(dst.vmm.memory.read(0x1000n, 3)).toEqual(Uint8Array.of(1, 2, 3));
      expect(await readPort(dst.dev)).toEqual(EXPOSED);
      // mtty resets nothing at close or open: the source's mdev, closed paused, opens in STOP.
      await src.close();
      src = await mttyVm(host, target.uuids[0]!, { backend });
      expect(migStateName(src.stateAtOpen)).toBe('STOP');
      expect([src.kernelState(), src.mig.state]).toEqual([RUNNING, RUNNING]); // the rig reset it
    });
  });
}

async function catchError(call: () => Promise<unknown>): Promise<VfioError> {
  try {
    await call();
  } catch (e) {
    expect(e).toBeInstanceOf(VfioError);
    return e as VfioError;
  }
  throw new Error('expected a VfioError');
}

for (const target of mttyTargets()) for (const backend of BACKENDS) describeMtty(target, backend);
