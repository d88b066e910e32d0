// `umw serve all --embedded` with UMW_EMBEDDED_DATA_DIR (what `npm start` runs with a data dir):
// writes through the edge (REST, every one with an Idempotency-Key) under load, `kill -9` at a random
// moment, restart on the same data dir, several rounds. After every restart: each command that got a
// 202 is still there (GetCommand), each entity whose command was seen APPLIED is there at least at
// that version, a used key with its payload replays the receipt and with another payload is refused.
// At the end every acknowledged command reaches APPLIED (accepted ones are re-sent after a restart).
//
//   node --import tsx --test test/embedded-crash.test.ts
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { freeServicePorts } from "./support/ports.js";
import { devAuthorization, embeddedEnv } from "./support/embedded-env.js";

const TENANT = "acme";
const TODOS = `/v1/tenants/${TENANT}/types/todo/entities`;
const ROUNDS = 4;
const WRITERS = 6;

interface Reply {
  readonly status: number;
  readonly headers: Headers;
  readonly body: any;
}

/** A write that got its 202: what was sent, and the receipt. */
interface Acknowledged {
  readonly round: number;
  readonly method: "POST" | "PATCH";
  readonly path: string;
  readonly body: Record<string, unknown>;
  readonly key: string;
  readonly commandId: string;
  readonly statusUrl: string;
  readonly entityId: string;
}

const errorReason = (body: any): string | undefined =>
  body?.details?.find((detail: { "@type": string }) => detail["@type"] === "type.googleapis.com/google.rpc.ErrorInfo")?.reason;

describe("umw serve all --embedded with a data dir: kill -9 loses nothing acknowledged", { timeout: 115_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), "umw-embedded-crash-"));
  const dataDir = join(dir, "data");
  let child: ChildProcess | undefined;
  let output = "";
  let edge = "";
  let authorization = "";

  const http = async (method: string, path: string, options: { body?: unknown; key?: string } = {}): Promise<Reply> => {
    const headers: Record<string, string> = { authorization };
    if (options.body !== undefined) headers["content-type"] = "application/json";
    if (options.key) headers["idempotency-key"] = `"${options.key}"`;
    const response = await fetch(`${edge}${path}`, { method, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body), signal: AbortSignal.timeout(15_000) });
    const text = await response.text();
    return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : undefined };
  };

  /** Starts the process on the data dir and waits until the edge's /readyz answers 200. */
  const start = async (): Promise<number> => {
    const ports = await freeServicePorts();
    edge = `http://127.0.0.1:${ports.UMW_EDGE_PORT}`;
    output = "";
    const started = Date.now();
    const spawned = spawn(process.execPath, ["bin/umw.mjs", "serve", "all", "--embedded"], {
      env: embeddedEnv(ports, join(dir, "certs"), { UMW_EMBEDDED_DATA_DIR: dataDir }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    child = spawned;
    const keep = (chunk: Buffer) => (output = (output + chunk).slice(-100_000));
    spawned.stdout!.on("data", keep);
    spawned.stderr!.on("data", keep);
    for (;;) {
      assert.equal(spawned.exitCode, null, `umw exited early:\n${output}`);
      assert.ok(Date.now() - started < 60_000, `umw not ready in 60 s:\n${output}`);
      const ready = await fetch(`${edge}/readyz`, { signal: AbortSignal.timeout(2_000) }).then(
        (response) => response.status === 200,
        () => false,
      );
      if (ready) {
        // The dev issuer's iss names the edge's port, new at every start.
        authorization = await devAuthorization(join(dir, "certs"), ports.UMW_EDGE_PORT!, TENANT);
        return Date.now() - started;
      }
      await sleep(100);
    }
  };

  const kill9 = async () => {
    const running = child!;
    if (running.exitCode === null && running.signalCode === null) {
      const exited = once(running, "exit");
      running.kill("SIGKILL");
      await exited;
    }
    assert.equal(running.signalCode, "SIGKILL", "killed by the signal, not exited on its own");
  };

  after(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await once(child, "exit");
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test(`${ROUNDS} rounds of writes under load, kill -9 at a random moment, restart on the same data dir`, async (t) => {
    const acknowledged: Acknowledged[] = [];
    /** Highest version seen APPLIED, per entity id. */
    const appliedVersion = new Map<string, number>();
    const applied = new Set<string>();
    const unexpected: string[] = [];
    let sent = 0;

    const firstStartMs = await start();
    assert.match(output, new RegExp(`the database is kept in ${dataDir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`), "says where the database is kept");
    const seeded = output.includes("new data dir made from the template");
    t.diagnostic(`first start (${seeded ? "data dir seeded from the template" : "initdb in the data dir"}): ready in ${firstStartMs} ms`);

    for (let round = 1; round <= ROUNDS; round++) {
      let killing = false;
      let stop = false;
      let counter = 0;

      const writer = async (worker: number) => {
        while (!stop) {
          const targets = [...appliedVersion.keys()];
          const patch = targets.length > 0 && Math.random() < 0.4;
          const key = `r${round}-w${worker}-${counter++}`;
          const method = patch ? "PATCH" : "POST";
          const entity = patch ? targets[Math.floor(Math.random() * targets.length)]! : undefined;
          const path = entity ? `${TODOS}/${entity}` : TODOS;
          const body = entity ? { done: Math.random() < 0.5, title: `patched ${key}` } : { title: `todo ${key}` };
          sent++;
          let reply: Reply;
          try {
            reply = await http(method, path, { body, key });
          } catch (error) {
            if (killing) return; // in flight at the kill: never acknowledged
            unexpected.push(`${method} ${path}: ${(error as Error).message}`);
            return;
          }
          if (reply.status !== 202) {
            unexpected.push(`${method} ${path}: ${reply.status} ${JSON.stringify(reply.body)}`);
            continue;
          }
          const receipt = reply.body.receipt;
          acknowledged.push({ round, method, path, body, key, commandId: receipt.commandId, statusUrl: receipt.statusUrl, entityId: receipt.entityId });
        }
      };

      /** Polls the statuses of the acknowledged commands not yet seen applied. */
      const watcher = async () => {
        while (!stop) {
          const pending = acknowledged.filter((command) => !applied.has(command.commandId)).slice(0, 20);
          for (const command of pending) {
            let reply: Reply;
            try {
              reply = await http("GET", command.statusUrl);
            } catch {
              return; // the process is gone
            }
            if (reply.status === 200 && reply.body.command.state === "COMMAND_STATE_APPLIED") {
              applied.add(command.commandId);
              const version = Number(reply.body.command.version);
              appliedVersion.set(command.entityId, Math.max(appliedVersion.get(command.entityId) ?? 0, version));
            }
          }
          await sleep(20);
        }
      };

      const before = acknowledged.length;
      const load = [...Array.from({ length: WRITERS }, (_, worker) => writer(worker)), watcher()];
      // The random moment of the crash: once the writes flow (the first ones after a start are slow
      // on a busy machine), somewhere in the next two seconds of load.
      const flowing = Date.now() + 30_000;
      while (acknowledged.length - before < WRITERS) {
        assert.ok(Date.now() < flowing, `round ${round}: no writes acknowledged in 30 s: ${JSON.stringify(unexpected)}\n${output}`);
        await sleep(20);
      }
      const killAfterMs = Math.floor(Math.random() * 2_000);
      await sleep(killAfterMs);
      killing = true;
      await kill9();
      stop = true;
      await Promise.all(load);
      assert.deepEqual(unexpected, [], "every write before the kill got its 202");
      const ackedThisRound = acknowledged.length - before;
      assert.ok(ackedThisRound > 0, `round ${round}: some writes were acknowledged before the kill`);

      const restartMs = await start();

      // Every 202 of every round so far: the command is there.
      const lost: string[] = [];
      for (const command of acknowledged) {
        const reply = await http("GET", command.statusUrl);
        if (reply.status !== 200) lost.push(`${command.method} ${command.key} → ${command.commandId}: ${reply.status} ${errorReason(reply.body)}`);
        else assert.equal(reply.body.command.commandId ?? command.commandId, command.commandId);
      }
      assert.deepEqual(lost, [], `round ${round}: acknowledged commands lost in the crash`);

      // Every entity seen APPLIED: there, at least at that version.
      for (const [id, version] of appliedVersion) {
        const reply = await http("GET", `${TODOS}/${id}`);
        assert.equal(reply.status, 200, `entity ${id} (seen APPLIED at version ${version}) after round ${round}: ${JSON.stringify(reply.body)}`);
        assert.ok(Number(reply.body.entity.version) >= version, `entity ${id}: version ${reply.body.entity.version} < ${version} seen APPLIED`);
      }

      // This round's keys: the same payload replays the receipt; another payload is refused.
      const mine = acknowledged.slice(before);
      for (const command of mine) {
        const replay = await http(command.method, command.path, { body: command.body, key: command.key });
        assert.equal(replay.status, 202, `replay of ${command.key}: ${JSON.stringify(replay.body)}`);
        assert.equal(replay.body.receipt.commandId, command.commandId, `replay of ${command.key}: the same command, not a new one`);
        assert.equal(replay.headers.get("idempotent-replayed"), "true");
      }
      for (const command of mine.filter((_, i) => i % 4 === 0)) {
        const reused = await http(command.method, command.path, { body: { ...command.body, title: `other ${command.key}` }, key: command.key });
        // A client error (the command service asks for 422; the REST edge answers 400 today).
        assert.ok(reused.status === 422 || reused.status === 400, `reuse of ${command.key} with another payload: ${reused.status} ${JSON.stringify(reused.body)}`);
        assert.equal(errorReason(reused.body), "IDEMPOTENCY_KEY_REUSED");
      }

      t.diagnostic(
        `round ${round}: kill -9 ${killAfterMs} ms into the load; ${ackedThisRound} writes acknowledged (${acknowledged.length} in all, ` +
          `${applied.size} seen APPLIED, ${appliedVersion.size} entities); restart ready in ${restartMs} ms; lost 0`,
      );
    }

    // Accepted before a crash and not yet applied: re-sent after the restart, so every one applies.
    const deadline = Date.now() + 30_000;
    let notApplied = acknowledged.filter((command) => !applied.has(command.commandId));
    while (notApplied.length > 0) {
      for (const command of notApplied) {
        const reply = await http("GET", command.statusUrl);
        assert.equal(reply.status, 200);
        const state = reply.body.command.state;
        assert.ok(state === "COMMAND_STATE_ACCEPTED" || state === "COMMAND_STATE_APPLIED", `${command.key}: ${JSON.stringify(reply.body.command)}`);
        if (state === "COMMAND_STATE_APPLIED") applied.add(command.commandId);
      }
      notApplied = acknowledged.filter((command) => !applied.has(command.commandId));
      assert.ok(Date.now() < deadline, `${notApplied.length} acknowledged commands still ACCEPTED 30 s after the last restart`);
      if (notApplied.length) await sleep(100);
    }
    t.diagnostic(`${ROUNDS} rounds, ${sent} writes sent, ${acknowledged.length} acknowledged, all ${applied.size} APPLIED, lost 0`);

    child!.kill("SIGTERM");
    const [code] = await once(child!, "exit");
    assert.equal(code, 0, output);
  });
});
