import { test } from "node:test";
import assert from "node:assert/strict";
import type { CacheEntry } from "../../runtime/cache/entry.js";
import { L1Cache } from "./l1.js";

const NOW = 1_000_000;
const entry = (version: bigint, freshMs = 60_000): CacheEntry => ({ kind: "entity", version, loadedAt: NOW, freshUntil: NOW + freshMs, staleUntil: NOW + 2 * freshMs, loadMs: 1 });

test("a read's copy never replaces a newer one; an event only moves forward", () => {
  const l1 = new L1Cache();
  assert.equal(l1.set("k", entry(3n), 10_000, NOW), true);
  assert.equal(l1.set("k", entry(2n), 10_000, NOW), false, "older copy refused");
  assert.equal(l1.get("k", NOW)?.version, 3n);
  assert.equal(l1.applyEvent("k", 3n, entry(3n), 10_000, NOW), false, "a redelivered event changes nothing");
  assert.equal(l1.applyEvent("k", 5n, entry(5n), 10_000, NOW), true);
  assert.equal(l1.applyEvent("k", 4n, entry(4n), 10_000, NOW), false, "an older event arriving late changes nothing");
  assert.equal(l1.get("k", NOW)?.version, 5n);
  assert.equal(l1.set("k", entry(4n), 10_000, NOW), false);
});

test("a delete leaves its version: no older copy comes back, nothing is served", () => {
  const l1 = new L1Cache();
  l1.set("k", entry(2n), 10_000, NOW);
  assert.equal(l1.applyEvent("k", 3n, undefined, 10_000, NOW), true);
  assert.equal(l1.get("k", NOW), undefined);
  assert.equal(l1.set("k", entry(2n), 10_000, NOW), false);
  assert.equal(l1.set("k", { ...entry(0n), kind: "negative", entity: undefined }, 10_000, NOW), false, "a stale negative entry is refused too");
  assert.equal(l1.applyEvent("k", 4n, entry(4n), 10_000, NOW), true, "re-created later");
  assert.equal(l1.get("k", NOW)?.version, 4n);
});

test("entries are served for min(l1Ms, freshness), the version is kept after", () => {
  const l1 = new L1Cache();
  l1.set("k", entry(2n, 5_000), 10_000, NOW);
  assert.equal(l1.get("k", NOW + 4_999)?.version, 2n);
  assert.equal(l1.get("k", NOW + 5_000), undefined);
  assert.equal(l1.newest("k")?.version, 2n);
  assert.equal(l1.set("k", entry(1n), 10_000, NOW + 6_000), false);
  assert.equal(l1.set("k", entry(2n), 0, NOW), false, "l1Ms 0: no L1");
});

test("the cap holds: the least recently stored key goes first", () => {
  const l1 = new L1Cache(3);
  for (let i = 0; i < 10; i++) l1.set(`k${i}`, entry(1n), 10_000, NOW);
  assert.equal(l1.size, 3);
  assert.deepEqual([0, 6, 7, 8, 9].map((i) => l1.get(`k${i}`, NOW)?.version), [undefined, undefined, 1n, 1n, 1n]);
  l1.applyEvent("k7", 2n, entry(2n), 10_000, NOW);
  l1.applyEvent("gone", 9n, undefined, 10_000, NOW);
  assert.equal(l1.size, 3);
  assert.equal(l1.get("k8", NOW), undefined, "k8 was the oldest once k7 was updated");
  assert.equal(l1.get("k7", NOW)?.version, 2n);
});
