/**
 * In-process single-flight: at most one pending load per key; later callers await the same
 * promise. A flight is removed when it settles, so the next miss starts a new one.
 */
export class SingleFlight<T> {
  private readonly flights = new Map<string, Promise<T>>();

  get(key: string): Promise<T> | undefined {
    return this.flights.get(key);
  }

  has(key: string): boolean {
    return this.flights.has(key);
  }

  /** Joins the pending flight of `key`, or starts `start()` as the new one. */
  run(key: string, start: () => Promise<T>): { readonly promise: Promise<T>; readonly leader: boolean } {
    const pending = this.flights.get(key);
    if (pending) return { promise: pending, leader: false };
    return { promise: this.track(key, start()), leader: true };
  }

  /** Registers a flight settled from outside (a batch leader loading many keys at once). */
  open(key: string): { readonly promise: Promise<T>; resolve(value: T): void; reject(error: unknown): void } {
    let resolve!: (value: T) => void;
    let reject!: (error: unknown) => void;
    const promise = this.track(key, new Promise<T>((res, rej) => ((resolve = res), (reject = rej))));
    return { promise, resolve, reject };
  }

  get size(): number {
    return this.flights.size;
  }

  private track(key: string, promise: Promise<T>): Promise<T> {
    this.flights.set(key, promise);
    const remove = () => {
      if (this.flights.get(key) === promise) this.flights.delete(key);
    };
    promise.then(remove, remove);
    return promise;
  }
}
