import { test } from "node:test";
import assert from "node:assert/strict";
import type { Principal } from "../../runtime/principal.js";
import { VerifiedTokens } from "./verified-tokens.js";

const principal = (subject: string): Principal => ({ kind: "user", subject, tenant: "t", scopes: [], roles: [], expiresAt: 0 });

test("verified tokens: kept until their expiry, least recently used evicted first, none with 0 entries", () => {
  const cache = new VerifiedTokens(2);
  cache.set("a", principal("a"), 1_000);
  cache.set("b", principal("b"), 1_000);
  assert.equal(cache.get("a", 500)?.subject, "a");
  cache.set("c", principal("c"), 1_000);
  assert.equal(cache.get("b", 500), undefined, "b was the least recently used");
  assert.equal(cache.get("a", 500)?.subject, "a");
  assert.equal(cache.get("a", 1_000), undefined, "not at or after its expiry");
  assert.equal(cache.size, 1);
  const off = new VerifiedTokens(0);
  off.set("a", principal("a"), 1_000);
  assert.equal(off.get("a", 0), undefined);
});
