// A promise with its settle functions, for the coordination of RAM channels.

/** A promise with its settle functions. */
export class Deferred<T = void> {
  resolve!: (value: T) => void;
  reject!: (e: unknown) => void;
  readonly promise = new Promise<T>((resolve, reject) => {
    this.resolve = resolve;
    this.reject = reject;
  });
}
