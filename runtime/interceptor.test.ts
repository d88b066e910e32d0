import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { observeStream } from "./interceptor.js";

async function* numbers(fail?: Error): AsyncGenerator<number> {
  yield 1;
  yield 2;
  if (fail) throw fail;
}

/** Two observers stacked as two interceptors stack them; `log` records what each saw, in order. */
function stacked(source: AsyncIterable<number>, log: string[]): AsyncIterable<number> {
  const inner = observeStream(
    source,
    (error) => new Error(`inner(${(error as Error).message})`),
    (error) => log.push(`inner end ${error ? (error as Error).message : "ok"}`),
  );
  return observeStream(
    inner,
    (error) => new Error(`outer(${(error as Error).message})`),
    (error) => log.push(`outer end ${error ? (error as Error).message : "ok"}`),
  );
}

describe("observeStream", () => {
  test("passes every message and tells each observer, inner first, that the stream completed", async () => {
    const log: string[] = [];
    const seen: number[] = [];
    for await (const n of stacked(numbers(), log)) seen.push(n);
    assert.deepEqual(seen, [1, 2]);
    assert.deepEqual(log, ["inner end ok", "outer end ok"]);
  });

  test("a failure is mapped by the inner observer, then the outer, and each is told the error it passed on", async () => {
    const log: string[] = [];
    const seen: number[] = [];
    const iterator = stacked(numbers(new Error("boom")), log)[Symbol.asyncIterator]();
    await assert.rejects(
      (async () => {
        for (;;) {
          const result = await iterator.next();
          if (result.done) return;
          seen.push(result.value);
        }
      })(),
      /^Error: outer\(inner\(boom\)\)$/,
    );
    assert.deepEqual(seen, [1, 2]);
    assert.deepEqual(log, ["inner end inner(boom)", "outer end outer(inner(boom))"]);
    assert.deepEqual(await iterator.next(), { done: true, value: undefined }, "a failed stream stays ended");
  });

  test("a consumer that stops early ends the source (its finally runs) and the observers are told once", async () => {
    const log: string[] = [];
    let closed = 0;
    async function* endless(): AsyncGenerator<number> {
      try {
        for (let n = 0; ; n++) yield n;
      } finally {
        closed++;
      }
    }
    const stream = stacked(endless(), log);
    for await (const n of stream) if (n === 3) break;
    assert.equal(closed, 1);
    assert.deepEqual(log, ["inner end ok", "outer end ok"]);
  });
});
