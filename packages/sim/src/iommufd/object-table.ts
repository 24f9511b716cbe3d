// The object table of one iommufd context (iommufd_ctx->objects, an XA_FLAGS_ALLOC1 xarray):
// ids from 1, lowest free first, reserved at allocation and visible once finalized
// (drivers/iommu/iommufd/main.c).

import { InvariantError } from '@vmmkit/core';
import { fail } from '../kernel/sim-errno.js';

/** iommufd object types (enum iommufd_object_type) that SimHost models. */
export type IommufdObjectType = 'ioas' | 'hwpt_paging' | 'device' | 'access' | 'selftest';

/** An object in the table. `busy` says whether something other than the table holds it. */
export abstract class IommufdObject {
  id = 0;
  abstract readonly type: IommufdObjectType;

  /** True while another object, an attachment or a driver holds a reference (IOMMU_DESTROY: EBUSY). */
  abstract get busy(): boolean;

  /** Free what the object holds: the kernel's per-type destroy op. Called once. */
  protected abstract destroyed(): void;

  /** Run the destroy op (called by the table only). */
  destroyNow(): void {
    this.destroyed();
  }
}

const RESERVED = Symbol('reserved');

export class ObjectTable {
  readonly #slots = new Map<number, IommufdObject | typeof RESERVED>();
  #lowestFree = 1;

  /** Reserve the lowest free id (xa_alloc); the object is invisible until finalize(). */
  allocId(): number {
    let id = this.#lowestFree;
    while (this.#slots.has(id)) id++;
    this.#slots.set(id, RESERVED);
    this.#lowestFree = id + 1;
    return id;
  }

  /** Make a reserved id refer to `object` (iommufd_object_finalize). */
  finalize(id: number, object: IommufdObject): void {
    if (this.#slots.get(id) !== RESERVED) throw new InvariantError(`sim iommufd: id ${id} was not reserved`);
    object.id = id;
    this.#slots.set(id, object);
  }

  /** Give back a reserved id that was never finalized (iommufd_object_abort). */
  abort(id: number): void {
    if (this.#slots.get(id) !== RESERVED) throw new InvariantError(`sim iommufd: id ${id} was not reserved`);
    this.#free(id);
  }

  /** Allocate an id and finalize `object` under it at once. */
  add<T extends IommufdObject>(object: T): T {
    this.finalize(this.allocId(), object);
    return object;
  }

  /** iommufd_get_object: ENOENT for an unknown id, a reserved id or an object of another type. */
  get<T extends IommufdObject>(id: number, ...types: IommufdObjectType[]): T {
    const slot = this.#slots.get(id);
    if (!slot || slot === RESERVED) return fail('ENOENT', `no iommufd object ${id}`);
    if (types.length && !types.includes(slot.type)) return fail('ENOENT', `object ${id} is a ${slot.type}, not a ${types.join(' or ')}`);
    return slot as T;
  }

  /** The object with `id` if there is one (any type), without failing. */
  find(id: number): IommufdObject | undefined {
    const slot = this.#slots.get(id);
    return slot === RESERVED ? undefined : slot;
  }

  /** IOMMU_DESTROY (iommufd_object_remove): ENOENT if unknown, EBUSY while referenced. */
  destroyUser(id: number): void {
    const object = this.get(id);
    if (object.busy) fail('EBUSY', `${object.type} ${id} is in use`);
    this.destroy(object);
  }

  /** Remove and destroy an object whatever holds it (the kernel's own destroy paths). */
  destroy(object: IommufdObject): void {
    if (this.#slots.get(object.id) !== object) throw new InvariantError(`sim iommufd: ${object.type} ${object.id} is not in the table`);
    this.#free(object.id);
    object.destroyNow();
  }

  /** Live objects, in id order. */
  objects(): IommufdObject[] {
    return [...this.#slots.entries()]
      .filter((e): e is [number, IommufdObject] => e[1] !== RESERVED)
      .sort(([a], [b]) => a - b)
      .map(([, o]) => o);
  }

  get size(): number {
    return this.#slots.size;
  }

  /**
   * iommufd_fops_release: destroy every object no other object holds, in id order, until the
   * table is empty (leaves first, so interior objects lose their users as the walk proceeds).
   */
  releaseAll(): void {
    while (this.#slots.size) {
      let destroyed = 0;
      for (const object of this.objects()) {
        if (object.busy || this.#slots.get(object.id) !== object) continue;
        this.destroy(object);
        destroyed++;
      }
      if (!destroyed) throw new InvariantError(`sim iommufd: release cannot progress: ${this.objects().map((o) => `${o.type} ${o.id}`).join(', ')}`);
    }
  }

  #free(id: number): void {
    this.#slots.delete(id);
    if (id < this.#lowestFree) this.#lowestFree = id;
  }
}
