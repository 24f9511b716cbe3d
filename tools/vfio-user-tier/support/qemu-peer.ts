// QEMU 11.1 as a test peer: started through run-qemu.sh in the tier's Debian root, with qtest
// playing the guest CPU and QMP for everything else. Whoever starts a QemuPeer stops it; its
// process cannot outlive the test process either way (see run-qemu.sh).

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { QemuPeerError } from './peer-error.js';
import { TIER_DIR } from './paths.js';
import { QmpClient, type QmpGreeting } from './qmp-client.js';
import { QtestListener, type QtestClient } from './qtest-client.js';
import type { RunDir } from './run-dir.js';

export interface QemuPeerOptions {
  /** Where the qtest and QMP sockets go (created and removed by the caller). */
  readonly runDir: RunDir;
  /** `-device` arguments, each one device (QEMU's JSON form or key=value). */
  readonly devices?: readonly string[];
  /** Guest RAM in MiB (a shared memfd, so that a vfio-user server can map it). Default 256. */
  readonly memoryMiB?: number;
  /** How long QEMU may take to come up. Default 15 s. */
  readonly startTimeoutMs?: number;
}

/** How much of QEMU's stderr is kept for error messages. */
const STDERR_KEEP = 8192;

/** A running QEMU with its qtest and QMP sessions. */
export class QemuPeer {
  readonly #process: ChildProcess;
  readonly #exited: Promise<number | string>;
  #stderr = '';
  #qtest: QtestClient | undefined;
  #qmp: QmpClient | undefined;
  #greeting: QmpGreeting | undefined;
  #listener: QtestListener | undefined;
  #startMs = 0;

  private constructor(readonly args: readonly string[], readonly runDir: RunDir) {
    // setpriv first: the launcher gets its parent-death signal before it runs a line, so this
    // process dying at any moment after the spawn takes QEMU with it.
    this.#process = spawn('setpriv', ['--pdeathsig', 'KILL', join(TIER_DIR, 'run-qemu.sh'), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.#process.stderr!.setEncoding('utf8');
    this.#process.stderr!.on('data', (chunk: string) => {
      this.#stderr = (this.#stderr + chunk).slice(-STDERR_KEEP);
    });
    this.#exited = new Promise((resolve) => {
      // 'close', not 'exit': by then all the process wrote is read, for the error messages.
      this.#process.once('close', (code, signal) => resolve(code ?? signal ?? 'unknown'));
      this.#process.once('error', (e) => {
        this.#stderr += `\n${e.message}`;
        resolve('spawn failed');
      });
    });
  }

  /** Starts QEMU and connects both sessions. On any failure QEMU is stopped before this rejects. */
  static async start(options: QemuPeerOptions): Promise<QemuPeer> {
    const { runDir } = options;
    const listener = await QtestListener.listen(runDir.hostSocket('qtest.sock'));
    let peer: QemuPeer | undefined;
    const t0 = performance.now();
    try {
      const mem = options.memoryMiB ?? 256;
      peer = new QemuPeer([
        '-machine', 'q35', '-accel', 'qtest',
        '-qtest', `unix:${runDir.rootSocket('qtest.sock')}`, '-qtest-log', 'none',
        '-qmp', `unix:${runDir.rootSocket('qmp.sock')},server=on,wait=off`,
        '-object', `memory-backend-memfd,id=mem,size=${mem}M,share=on`, '-machine', 'memory-backend=mem', '-m', `${mem}M`,
        '-nographic', '-nodefaults',
        ...(options.devices ?? []).flatMap((d) => ['-device', d]),
      ], runDir);
      peer.#listener = listener;
      const timeout = options.startTimeoutMs ?? 15_000;
      const gone = peer.#exited.then((status) => status);
      peer.#qtest = await withTimeout(listener.accept(gone), timeout, 'QEMU did not connect to the qtest socket');
      listener.close();
      peer.#listener = undefined;
      const { client, greeting } = await Promise.race([
        QmpClient.connect(runDir.hostSocket('qmp.sock'), timeout),
        gone.then(() => { throw new QemuPeerError('QEMU exited before its QMP socket answered'); }),
      ]);
      peer.#qmp = client;
      peer.#greeting = greeting;
      peer.#startMs = performance.now() - t0;
      return peer;
    } catch (e) {
      await peer?.stop();
      const why = peer ? `${(e as Error).message}; QEMU said: ${peer.stderr.trim() || '(nothing)'}` : (e as Error).message;
      listener.close();
      throw new QemuPeerError(`starting QEMU failed: ${why}`, { cause: e });
    }
  }

  get qtest(): QtestClient {
    return this.#qtest!;
  }

  get qmp(): QmpClient {
    return this.#qmp!;
  }

  /** QEMU's version line from its QMP greeting (`11.1.3 (Debian 1:11.1.3+ds-2~bpo13+1)`). */
  get version(): string {
    const v = this.#greeting!.version;
    return `${v.qemu.major}.${v.qemu.minor}.${v.qemu.micro} (${v.package})`;
  }

  /** How long `start` took, from spawning to both sessions up (reported by the tier, never asserted). */
  get startMs(): number {
    return this.#startMs;
  }

  /** The launcher's process id (setpriv, then run-qemu.sh, then unshare, by exec; QEMU is its child). */
  get launcherPid(): number {
    return this.#process.pid!;
  }

  /** QEMU's process id as the host sees it (unshare's forked child, which exec'd chroot then QEMU). */
  get qemuPid(): number | undefined {
    return childrenOf(this.launcherPid)[0];
  }

  /** The end of what QEMU wrote on stderr. */
  get stderr(): string {
    return this.#stderr;
  }

  /** Resolves with QEMU's exit code (or signal) once it exited. */
  get exited(): Promise<number | string> {
    return this.#exited;
  }

  /**
   * Stops QEMU: `quit` over QMP, then SIGKILL to the launcher (its QEMU dies with it) when QEMU
   * has not exited within `graceMs`. Closes both sessions and removes both sockets (the run
   * folder stays with its owner). Safe to call twice.
   */
  async stop(graceMs = 3_000): Promise<void> {
    const exited = this.#exited;
    if (this.#qmp && this.#process.exitCode === null && this.#process.signalCode === null) {
      await this.#qmp.execute('quit').catch(() => { /* QEMU may close the socket first */ });
    }
    const done = await Promise.race([exited.then(() => true), new Promise<false>((r) => setTimeout(r, graceMs, false))]);
    if (!done) {
      this.#process.kill('SIGKILL');
      await exited;
    }
    this.#qtest?.close();
    this.#qmp?.close();
    this.#listener?.close();
    // QEMU removes its QMP socket when it quits, not when it is killed.
    rmSync(this.runDir.hostSocket('qmp.sock'), { force: true });
  }
}

/** The children of a process, from /proc (empty once it exited). */
export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new QemuPeerError(`${what} within ${ms} ms`)), ms); }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
