// vmmkit's vfio-user device server as a child process: `vmmkit serve --device KIND --socket PATH`
// (@vmmkit/vfio-user-server behind the examples CLI). The test that starts one stops it; like
// QEMU, it cannot outlive the test process (setpriv --pdeathsig KILL).

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { QemuPeerError } from './peer-error.js';
import { PROJECT_DIR } from './paths.js';

/** The server package's folder; the vfio-user suites skip, saying so, while it does not exist. */
export const SERVER_PACKAGE_DIR = join(PROJECT_DIR, 'packages', 'vfio-user-server');

/** Why vmmkit's server cannot be used here, or undefined when it can. */
export function serverMissingReason(): string | undefined {
  return existsSync(join(SERVER_PACKAGE_DIR, 'package.json'))
    ? undefined
    : 'the server package @vmmkit/vfio-user-server is missing (packages/vfio-user-server, issue 12): nothing serves a device to QEMU yet';
}

const STDERR_KEEP = 8192;

export class DeviceServer {
  readonly #process: ChildProcess;
  readonly #exited: Promise<number | string>;
  #output = '';

  private constructor(readonly device: string, readonly socketPath: string) {
    const cli = join(PROJECT_DIR, 'examples', 'bin', 'vmmkit.js');
    this.#process = spawn('setpriv', ['--pdeathsig', 'KILL', process.execPath, cli, 'serve', '--device', device, '--socket', socketPath], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    for (const stream of [this.#process.stdout!, this.#process.stderr!]) {
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => { this.#output = (this.#output + chunk).slice(-STDERR_KEEP); });
    }
    this.#exited = new Promise((resolve) => {
      // 'close', not 'exit': by then all the process wrote is read, for the error messages.
      this.#process.once('close', (code, signal) => resolve(code ?? signal ?? 'unknown'));
      this.#process.once('error', (e) => {
        this.#output += `\n${e.message}`;
        resolve('spawn failed');
      });
    });
  }

  /**
   * Starts the server and waits until its socket exists (the CLI may build the workspace first,
   * hence the generous default). On failure the process is stopped before this rejects.
   */
  static async start(device: string, socketPath: string, timeoutMs = 120_000): Promise<DeviceServer> {
    const server = new DeviceServer(device, socketPath);
    const deadline = Date.now() + timeoutMs;
    let status: number | string | undefined;
    void server.#exited.then((s) => { status = s; });
    while (!isSocket(socketPath)) {
      if (status !== undefined || Date.now() > deadline) {
        await server.stop();
        const why = status !== undefined ? `exited (${status})` : `did not create ${socketPath} within ${timeoutMs} ms`;
        throw new QemuPeerError(`vmmkit serve --device ${device} ${why}; it said: ${server.output.trim() || '(nothing)'}`);
      }
      await sleep(20);
    }
    return server;
  }

  /** The end of what the server printed (stdout and stderr). */
  get output(): string {
    return this.#output;
  }

  get exited(): Promise<number | string> {
    return this.#exited;
  }

  /** Whether the server is still running. */
  get running(): boolean {
    return this.#process.exitCode === null && this.#process.signalCode === null;
  }

  /** SIGTERM, then SIGKILL after `graceMs`. Safe to call twice. */
  async stop(graceMs = 3_000): Promise<void> {
    if (this.running) this.#process.kill('SIGTERM');
    const done = await Promise.race([this.#exited.then(() => true), sleep(graceMs, false)]);
    if (!done) {
      this.#process.kill('SIGKILL');
      await this.#exited;
    }
  }
}

function isSocket(path: string): boolean {
  try {
    return statSync(path).isSocket();
  } catch {
    return false;
  }
}
