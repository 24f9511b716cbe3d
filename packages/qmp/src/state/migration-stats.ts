// query-migrate's numbers (qapi/migration.json MigrationInfo / MigrationStats / VfioStats),
// gathered from the migration's progress events: RAM sent, what remained at the last dirty sync,
// the rate the guest dirties pages, the syncs, the downtime expected and the one measured.

import type { Vmm } from '@vmmkit/core';
import { STREAM_PAGE_SIZE, migrationParameters, type MigrationProgress, type MigrationResult } from '@vmmkit/migration';

/** Counters of one migration. */
export class MigrationStats {
  readonly #startedAt = performance.now();
  #activeAt: number | undefined;
  #endedAt: number | undefined;
  #lastSyncAt: number | undefined;
  #pages = 0;
  #zeroPages = 0;
  #deviceBytes = 0;
  #bytesSent = 0;
  #remaining: number;
  #dirtyRate = 0;
  #syncs = 0;
  #throughput = 0;
  #expectedDowntimeMs: number | undefined;
  #downtimeMs: number | undefined;

  constructor(private readonly vmm: Vmm) {
    this.#remaining = ramBytes(vmm);
  }

  /** The first pass began: the log started full, which QEMU counts as the first sync. */
  active(): void {
    this.#activeAt ??= performance.now();
    this.#syncs = Math.max(this.#syncs, 1);
    this.#lastSyncAt = performance.now();
  }

  /**
   * A dirty sync found `dirtyPages`; returns the pass number (MIGRATION_PASS's `pass`). The rate
   * the guest dirties pages is measured between precopy syncs, while it runs: the stop-copy sync
   * follows the last one at once, with the guest paused.
   */
  synced(dirtyPages: number, expectedDowntimeMs: number, phase: 'precopy' | 'stop-copy'): number {
    const now = performance.now();
    if (phase === 'precopy' && this.#lastSyncAt !== undefined) this.#dirtyRate = Math.round(dirtyPages / (Math.max(now - this.#lastSyncAt, 1) / 1000));
    this.#lastSyncAt = now;
    this.#remaining = dirtyPages * STREAM_PAGE_SIZE;
    this.#expect(expectedDowntimeMs);
    return ++this.#syncs;
  }

  /** A pass was sent. */
  progressed(p: MigrationProgress): void {
    this.#pages += p.pagesSent;
    this.#zeroPages += p.zeroPages;
    this.#deviceBytes += p.deviceBytes;
    this.#bytesSent = p.bytesSent;
    this.#throughput = p.throughput;
    // What the guest dirtied meanwhile is known at the next sync only.
    this.#remaining = 0;
    this.#expect(p.expectedDowntimeMs);
  }

  completed(result: MigrationResult): void {
    this.#downtimeMs = result.downtimeMs;
    this.#bytesSent = result.bytesSent;
    this.#ended();
  }

  #ended(): void {
    this.#endedAt ??= performance.now();
  }

  /** The migration ended some other way. */
  ended(): void {
    this.#ended();
  }

  #expect(ms: number): void {
    if (Number.isFinite(ms)) this.#expectedDowntimeMs = ms;
  }

  /** The members of MigrationInfo besides `status`, for a migration in `status`. */
  info(status: string, withVfio: boolean): Record<string, unknown> {
    const now = this.#endedAt ?? performance.now();
    const info: Record<string, unknown> = {
      'total-time': Math.round(now - this.#startedAt),
      ...(this.#activeAt !== undefined && { 'setup-time': Math.round(this.#activeAt - this.#startedAt) }),
    };
    if (status === 'active' || status === 'completed' || status === 'device') {
      const ramSent = Math.max(this.#bytesSent - this.#deviceBytes, 0);
      const seconds = Math.max(now - (this.#activeAt ?? this.#startedAt), 1) / 1000;
      info.ram = {
        transferred: ramSent, remaining: status === 'completed' ? 0 : this.#remaining, total: ramBytes(this.vmm),
        duplicate: this.#zeroPages, normal: this.#pages, 'normal-bytes': this.#pages * STREAM_PAGE_SIZE,
        'dirty-pages-rate': this.#dirtyRate, mbps: (this.#throughput * 8) / 1e6, 'dirty-sync-count': this.#syncs,
        'postcopy-requests': 0, 'page-size': STREAM_PAGE_SIZE, 'multifd-bytes': 0,
        'pages-per-second': Math.round((this.#pages + this.#zeroPages) / seconds),
        'precopy-bytes': ramSent, 'downtime-bytes': 0, 'postcopy-bytes': 0, 'dirty-sync-missed-zero-copy': 0,
      };
      if (withVfio) info.vfio = { transferred: this.#deviceBytes };
    }
    if (status === 'active') info['expected-downtime'] = Math.round(this.#expectedDowntimeMs ?? migrationParameters(this.vmm).values.downtimeLimitMs);
    if (status === 'completed' && this.#downtimeMs !== undefined) info.downtime = Math.round(this.#downtimeMs);
    return info;
  }
}

/** Guest RAM in bytes (MigrationStats' `total`). */
function ramBytes(vmm: Vmm): number {
  return vmm.memory.blocks.reduce((sum, b) => sum + Number(b.size), 0);
}
