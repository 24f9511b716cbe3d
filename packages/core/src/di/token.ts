// Typed injection tokens: one unique symbol per contract, declared beside its interface.

import type { InjectionToken } from 'tsyringe';

/** A tsyringe token that carries the type it resolves to. */
export type Token<T> = symbol & InjectionToken<T>;

/**
 * Create the token of a contract. Descriptions are dotted and lowercase (`host.kernel`,
 * `vfio.iommu-backends`); the symbol is registered globally so two copies of a package agree.
 */
export function token<T>(description: string): Token<T> {
  return Symbol.for(`vmmkit.${description}`) as Token<T>;
}
