import { test } from "node:test";
import assert from "node:assert/strict";
import { withRetry } from "./retry.js";

test("retries until success, with growing delays, and reports each retry", async () => {
  const delays: number[] = [];
  let calls = 0;
  const value = await withRetry(
    async () => {
      calls++;
      if (calls < 4) throw new Error(`fail ${calls}`);
      return "ok";
    },
    { initialDelayMs: 1, maxDelayMs: 20, onRetry: (_error, _attempt, delay) => delays.push(delay) },
  );
  assert.equal(value, "ok");
  assert.equal(calls, 4);
  assert.equal(delays.length, 3);
  assert.ok(delays.every((delay) => delay >= 0 && delay <= 20), String(delays));
});

test("stops at maxAttempts, at the deadline, and on a failure the predicate refuses", async () => {
  let calls = 0;
  await assert.rejects(withRetry(async () => { calls++; throw new Error("always"); }, { initialDelayMs: 1, maxAttempts: 3 }), /always/);
  assert.equal(calls, 3);

  calls = 0;
  const started = Date.now();
  await assert.rejects(withRetry(async () => { calls++; throw new Error("late"); }, { initialDelayMs: 5, maxDelayMs: 5, deadline: Date.now() + 60 }), /late/);
  assert.ok(Date.now() - started < 1_000 && calls >= 2, `calls ${calls}`);

  calls = 0;
  await assert.rejects(withRetry(async () => { calls++; throw new Error("permanent"); }, { initialDelayMs: 1, shouldRetry: () => false }), /permanent/);
  assert.equal(calls, 1);
});

test("an abort during a wait rejects at once and makes no further attempt", async () => {
  const controller = new AbortController();
  let calls = 0;
  const started = Date.now();
  const pending = withRetry(
    async (attempt) => {
      calls++;
      assert.equal(attempt, calls);
      throw new Error("down");
    },
    { initialDelayMs: 5_000, maxDelayMs: 5_000, signal: controller.signal, onRetry: () => controller.abort(new Error("stopping")) },
  );
  await assert.rejects(pending, /stopping/);
  assert.ok(Date.now() - started < 1_000, "rejected without waiting out the delay");
  assert.equal(calls, 1);
});
