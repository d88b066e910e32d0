import { createHash } from "node:crypto";
import type { Principal } from "../../runtime/principal.js";

/**
 * Tokens already verified, by SHA-256 of the token (the token itself is never kept): a bounded LRU,
 * each entry until the token's `exp` (plus the tolerated skew). A hit skips the signature check.
 */
export class VerifiedTokens {
  private readonly entries = new Map<string, { readonly principal: Principal; readonly until: number }>();

  constructor(private readonly maxEntries: number) {}

  get(token: string, now = Date.now()): Principal | undefined {
    if (this.maxEntries <= 0) return undefined;
    const key = digest(token);
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    this.entries.delete(key);
    if (entry.until <= now) return undefined;
    this.entries.set(key, entry);
    return entry.principal;
  }

  set(token: string, principal: Principal, until: number): void {
    if (this.maxEntries <= 0) return;
    const key = digest(token);
    this.entries.delete(key);
    this.entries.set(key, { principal, until });
    while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }

  get size(): number {
    return this.entries.size;
  }
}

const digest = (token: string) => createHash("sha256").update(token).digest("base64url");
