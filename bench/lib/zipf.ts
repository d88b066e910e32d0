/**
 * Seeded Zipf(s) sampling over ranks 1..n: P(rank k) ∝ k^-s. The CDF is built once, each draw is
 * a binary search over it. Deterministic for a seed (mulberry32), so runs are comparable.
 */
export class Zipf {
  private readonly cdf: Float64Array;
  private state: number;

  constructor(
    readonly n: number,
    readonly s: number,
    seed = 1,
  ) {
    this.cdf = new Float64Array(n);
    let total = 0;
    for (let k = 1; k <= n; k++) total += k ** -s;
    let running = 0;
    for (let k = 1; k <= n; k++) {
      running += k ** -s / total;
      this.cdf[k - 1] = running;
    }
    this.cdf[n - 1] = 1;
    this.state = seed >>> 0;
  }

  /** A rank in 1..n. */
  next(): number {
    const u = this.random();
    let lo = 0;
    let hi = this.n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo + 1;
  }

  /** Expected number of distinct ranks in `draws` draws (the compulsory misses of a cold cache). */
  expectedDistinct(draws: number): number {
    let distinct = 0;
    let previous = 0;
    for (let k = 0; k < this.n; k++) {
      const p = this.cdf[k]! - previous;
      previous = this.cdf[k]!;
      distinct += 1 - (1 - p) ** draws;
    }
    return distinct;
  }

  private random(): number {
    // mulberry32
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}
