// The qtest client against a scripted peer on a real Unix socket (no QEMU): answers in order,
// IRQ lines between answers, FAIL answers, and a peer that goes away with requests pending.

import { connect, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readLines } from '../../support/line-reader.js';
import { QemuPeerError } from '../../support/peer-error.js';
import { QtestListener, type QtestClient } from '../../support/qtest-client.js';

/** Plays QEMU: connects to the listener, records each request line, answers with `answer(line)`. */
function fakeQemu(path: string, answer: (line: string) => string | undefined): { socket: Socket; lines: string[] } {
  const socket = connect(path);
  const lines: string[] = [];
  readLines(socket, (line) => {
    lines.push(line);
    const reply = answer(line);
    if (reply !== undefined) socket.write(reply);
  });
  return { socket, lines };
}

describe('QtestClient', () => {
  let dir: string;
  let listener: QtestListener;
  let client: QtestClient | undefined;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vmmkit-qtest-'));
    listener = await QtestListener.listen(join(dir, 'qtest.sock'));
  });

  afterEach(() => {
    client?.close();
    listener.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('formats requests as QEMU parses them and reads the answers in order', async () => {
    const peer = fakeQemu(listener.path, (line) => {
      if (line.startsWith('inl')) return 'OK 0x12345678\n';
      if (line.startsWith('readq')) return 'OK 0xffffffffffffffff\n';
      if (line.startsWith('b64read')) return `OK ${Buffer.from([1, 2, 3]).toString('base64')}\n`;
      return 'OK\n';
    });
    client = await listener.accept(new Promise(() => {}));
    const [, inl, readq, bytes] = await Promise.all([
      client.outl(0xcf8, 0x8000_0800),
      client.inl(0xcfc),
      client.readq(0xe000_0000n),
      client.read(0x1000n, 3),
      client.writeq(0x10n, -1n),
      client.write(0x2000n, new Uint8Array([0xde, 0xad])),
    ]);
    expect(inl).toBe(0x1234_5678);
    expect(readq).toBe(0xffff_ffff_ffff_ffffn);
    expect([...bytes]).toEqual([1, 2, 3]);
    expect(peer.lines).toEqual([
      'outl 0xcf8 0x80000800', 'inl 0xcfc', 'readq 0xe0000000', 'b64read 0x1000 3',
      'writeq 0x10 0xffffffffffffffff', `b64write 0x2000 2 ${Buffer.from([0xde, 0xad]).toString('base64')}`,
    ]);
  });

  it('takes IRQ lines between answers as level changes, not as answers', async () => {
    fakeQemu(listener.path, (line) => (line.startsWith('writel') ? 'IRQ raise 17\nOK\n' : line.startsWith('readl') ? 'IRQ lower 17\nOK 0x0000000000000005\n' : 'OK\n'));
    client = await listener.accept(new Promise(() => {}));
    const seen: string[] = [];
    client.onIrq((c) => seen.push(`${c.line}:${c.level}`));
    await client.irqInterceptIn('ioapic');
    await client.writel(0xe000_0060n, 1);
    expect(client.irqLevel(17)).toBe(true);
    expect(client.raisedIrqs()).toEqual([17]);
    expect(await client.readl(0xe000_0024n)).toBe(5);
    expect(client.irqLevel(17)).toBe(false);
    expect(seen).toEqual(['17:true', '17:false']);
  });

  it("rejects a FAIL answer with QEMU's words, and clock_step's FAIL means no pending timer", async () => {
    fakeQemu(listener.path, (line) =>
      line.startsWith('irq_intercept_in') ? 'FAIL Unknown device\n' : line === 'clock_step' ? 'FAIL cannot advance clock to the next deadline because there is no pending deadline\n' : 'OK 100000000\n');
    client = await listener.accept(new Promise(() => {}));
    await expect(client.irqInterceptIn('nosuch')).rejects.toThrow(/irq_intercept_in nosuch' answered 'FAIL Unknown device'/);
    expect(await client.clockStep()).toBeUndefined();
    expect(await client.clockStep(100_000_000)).toBe(100_000_000n);
  });

  it('rejects every pending request when QEMU goes away, and later ones at once', async () => {
    const peer = fakeQemu(listener.path, () => undefined);
    client = await listener.accept(new Promise(() => {}));
    const pending = [client.inb(0x60), client.readl(0n)];
    await new Promise((r) => setTimeout(r, 20));
    peer.socket.destroy();
    for (const p of pending) await expect(p).rejects.toBeInstanceOf(QemuPeerError);
    await expect(client.outb(0x80, 0)).rejects.toThrow(/closed the qtest connection/);
  });

  it('refuses empty reads and writes before asking QEMU (it would assert or answer ERR)', async () => {
    fakeQemu(listener.path, () => 'OK\n');
    client = await listener.accept(new Promise(() => {}));
    await expect(client.read(0n, 0)).rejects.toBeInstanceOf(QemuPeerError);
    await expect(client.write(0n, new Uint8Array())).rejects.toBeInstanceOf(QemuPeerError);
  });

  it('reports a QEMU that exits before connecting', async () => {
    await expect(listener.accept(Promise.resolve(1))).rejects.toThrow(/exited before it connected/);
  });
});
