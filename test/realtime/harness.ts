import { randomBytes, randomUUID } from "node:crypto";
import { waitFor } from "../support/wait.js";
import { create, toBinary, type JsonObject } from "@bufbuild/protobuf";
import kafkajs from "kafkajs";
import pg from "pg";
import { ChangeKind, DomainEventSchema } from "../../gen/umw/v1/envelope_pb.js";
import type { Entity } from "../../gen/umw/v1/entity_pb.js";
import { RealtimeService, type SubscribeResponse } from "../../gen/umw/v1/realtime_pb.js";
import { createClient, type CallOptions, type MeshClient } from "../../runtime/client.js";
import { cloudEventHeaders, EVENT_TYPES, newEventContext } from "../../runtime/cloudevents.js";
import { entityFromRow, entityKey, type EntityRow } from "../../runtime/entity.js";
import { KafkaBus } from "../../runtime/kafka-bus.js";
import { rootLogger } from "../../runtime/logger.js";
import { migrate } from "../../runtime/migrate.js";
import { connectPostgres, type Database } from "../../runtime/sql.js";
import { clientCredentials, serverCredentials } from "../../runtime/tls.js";
import { topicNames } from "../../runtime/topics.js";
import { postgresCommandFeed, postgresSnapshotSource, startRealtimeHub, type RealtimeLimits, type RunningRealtimeHub } from "../../services/realtime/index.js";
import { testCerts, type TestCerts } from "../support/certs.js";
import { infra } from "../support/env.js";

export const PG_ADMIN_URL = infra.pgUrl;
export const KAFKA_BROKERS = [...infra.kafkaBrokers];
export const PARTITIONS = 3;
export const log = rootLogger(process.env.UMW_TEST_LOG ?? "silent");

export const unique = (prefix: string) => `${prefix}${Date.now().toString(36)}${randomBytes(3).toString("hex")}`;

/** Real Postgres (a fresh database) and Kafka (fresh topics), mTLS certs, and hubs started on them. */
export class Harness {
  readonly certs: TestCerts;
  readonly prefix = `${unique("t")}.`;
  readonly topic = topicNames({ topicPrefix: this.prefix }).entityEvents;
  readonly dbName = unique("umw_t_");
  readonly dbUrl: string;
  /** The test's own producer: publishes as the relay would. */
  readonly bus = new KafkaBus({ sasl: infra.kafkaSasl, brokers: KAFKA_BROKERS, clientId: "umw-realtime-test", log });
  db!: Database;
  private readonly hubs: { running: RunningRealtimeHub; bus: KafkaBus }[] = [];
  private hubCount = 0;
  private readonly clients: MeshClient<typeof RealtimeService>[] = [];

  /** `identities`: mesh certificates beyond realtime, cli and edge (e.g. envoy and policy, for a hub behind Envoy). */
  constructor(identities: readonly string[] = []) {
    this.certs = testCerts(["realtime", "cli", "edge", ...identities]);
    const url = new URL(PG_ADMIN_URL);
    url.pathname = `/${this.dbName}`;
    this.dbUrl = url.toString();
  }

  async setUp(): Promise<void> {
    const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${this.dbName}`);
    } finally {
      await admin.end();
    }
    await migrate(this.dbUrl);
    this.db = await connectPostgres({ url: this.dbUrl, role: "primary", log, max: 10 });
    await this.bus.connect();
    await this.bus.ensureTopics([{ name: this.topic, partitions: PARTITIONS }]);
  }

  async startHub(limits: Partial<RealtimeLimits> = {}, trustedPeers?: readonly string[]): Promise<RunningRealtimeHub> {
    const n = this.hubCount++;
    const bus = new KafkaBus({ sasl: infra.kafkaSasl, brokers: KAFKA_BROKERS, clientId: `umw-realtime-hub-${n}`, log });
    const running = await startRealtimeHub({
      bus,
      topic: this.topic,
      snapshots: postgresSnapshotSource(this.db),
      commands: postgresCommandFeed({ openSession: () => this.db.openSession(), sql: this.db, log }),
      limits,
      trustedPeers,
      credentials: serverCredentials(this.certs.identity("realtime")),
      log,
      group: `${this.prefix}realtime-${n}`,
      // Fresh topic: from the beginning closes the gap between joining the group and the first fetch.
      fromBeginning: true,
    });
    this.hubs.push({ running, bus });
    return running;
  }

  /** A client of `hub` with the mTLS identity `as`: "edge" may assert x-umw-principal and x-umw-connection-id, "cli" may not. */
  client(hub: RunningRealtimeHub, as: "edge" | "cli" = "edge"): MeshClient<typeof RealtimeService> {
    const client = createClient(RealtimeService, hub.address, clientCredentials(this.certs.identity(as)), {
      // A distinct channel per client, so that one slow stream's flow control does not touch the others.
      "grpc.use_local_subchannel_pool": 1,
    });
    this.clients.push(client);
    return client;
  }

  /** Writes the row as the processor would (version + 1), then publishes the domain event as the relay would. */
  async write(tenant: string, type: string, id: string, data: JsonObject, kind?: ChangeKind): Promise<Entity> {
    const { rows } =
      kind === ChangeKind.DELETED
        ? await this.db.query<EntityRow>(`DELETE FROM umw_entities WHERE tenant = $1 AND type = $2 AND id = $3 RETURNING tenant, type, id, version + 1 AS version, data`, [
            tenant,
            type,
            id,
          ])
        : await this.db.query<EntityRow>(
            `INSERT INTO umw_entities (tenant, type, id, version, data) VALUES ($1, $2, $3, 1, $4)
             ON CONFLICT (tenant, type, id) DO UPDATE SET version = umw_entities.version + 1, data = EXCLUDED.data, update_time = now()
             RETURNING tenant, type, id, version, data, create_time, update_time`,
            [tenant, type, id, JSON.stringify(data)],
          );
    const entity = entityFromRow(rows[0]!);
    const actual = kind ?? (entity.version === 1n ? ChangeKind.CREATED : ChangeKind.UPDATED);
    await this.publish(entity, actual);
    return entity;
  }

  async publish(entity: Entity, kind: ChangeKind, id?: string): Promise<void> {
    const key = entityKey(entity.tenant, entity.type, entity.id);
    const type = kind === ChangeKind.CREATED ? EVENT_TYPES.entityCreated : kind === ChangeKind.DELETED ? EVENT_TYPES.entityDeleted : EVENT_TYPES.entityUpdated;
    const context = newEventContext({ source: "umw/test", type, subject: key, id });
    const event = create(DomainEventSchema, { context, commandId: randomUUID(), kind, entity });
    await this.bus.publish(this.topic, [{ key, value: toBinary(DomainEventSchema, event), headers: cloudEventHeaders(context) }]);
  }

  /** Waits until every hub has handled everything published so far (per partition heads). */
  async settle(hubs: readonly RunningRealtimeHub[], timeoutMs = 10_000): Promise<void> {
    const admin = new kafkajs.Kafka({ sasl: infra.kafkaSasl, brokers: KAFKA_BROKERS, logLevel: kafkajs.logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      const offsets = await admin.fetchTopicOffsets(this.topic);
      const behind = () =>
        hubs.flatMap((hub) => offsets.filter(({ partition, high }) => Number(high) > 0 && (hub.stats().heads[partition] ?? -1) < Number(high) - 1).map(({ partition, high }) => `hub ${hub.stats().epoch} below offset ${Number(high) - 1} of partition ${partition}`));
      await waitFor(() => behind().length === 0, { what: "every hub at the topic's end", timeoutMs, detail: () => behind().join("; ") });
    } finally {
      await admin.disconnect();
    }
  }

  async tearDown(): Promise<void> {
    for (const client of this.clients) client.close();
    for (const { running, bus } of this.hubs) {
      await running.stop().catch(() => undefined);
      await bus.close().catch(() => undefined);
    }
    await this.bus.close().catch(() => undefined);
    const admin = new kafkajs.Kafka({ sasl: infra.kafkaSasl, brokers: KAFKA_BROKERS, logLevel: kafkajs.logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      await admin.deleteTopics({ topics: [this.topic] }).catch(() => undefined);
      const groups = (await admin.listGroups()).groups.map((group) => group.groupId).filter((id) => id.startsWith(this.prefix));
      if (groups.length) await admin.deleteGroups(groups).catch(() => undefined);
    } finally {
      await admin.disconnect();
    }
    await this.db?.close().catch(() => undefined);
    const pgAdmin = new pg.Client({ connectionString: PG_ADMIN_URL });
    await pgAdmin.connect();
    try {
      await pgAdmin.query(`DROP DATABASE IF EXISTS ${this.dbName} WITH (FORCE)`);
    } finally {
      await pgAdmin.end();
    }
    this.certs.remove();
  }
}

/** A stream read on demand: the test decides when (and whether) to take the next message. */
export class Reader {
  readonly messages: SubscribeResponse[] = [];
  private readonly iterator: AsyncIterator<SubscribeResponse>;
  readonly controller = new AbortController();
  error: unknown;
  done = false;

  constructor(client: MeshClient<typeof RealtimeService>, request: Parameters<MeshClient<typeof RealtimeService>["subscribe"]>[0], options: CallOptions = {}) {
    this.iterator = client.subscribe(request, { ...options, signal: this.controller.signal })[Symbol.asyncIterator]();
  }

  /** The next message, or undefined when the stream ended (the error, if any, is kept in `error`). */
  async next(timeoutMs = 10_000): Promise<SubscribeResponse | undefined> {
    if (this.done) return undefined;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no message within ${timeoutMs} ms`)), timeoutMs)));
    try {
      const result = await Promise.race([this.iterator.next(), timeout]);
      if (result.done) {
        this.done = true;
        return undefined;
      }
      this.messages.push(result.value);
      return result.value;
    } catch (error) {
      if (error instanceof Error && error.message.startsWith("no message within")) throw error;
      this.done = true;
      this.error = error;
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Reads until `until` holds for a message (returns it), skipping heartbeats unless asked for. */
  async until(until: (message: SubscribeResponse) => boolean, timeoutMs = 10_000): Promise<SubscribeResponse> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const message = await this.next(Math.max(1, deadline - Date.now()));
      if (!message) throw new Error(`stream ended before the expected message: ${String(this.error)}`);
      if (until(message)) return message;
    }
  }

  /** The first message (already received or still to come) for which `predicate` holds. */
  async find(predicate: (message: SubscribeResponse) => boolean, timeoutMs = 10_000): Promise<SubscribeResponse> {
    return this.messages.find(predicate) ?? this.until(predicate, timeoutMs);
  }

  /** Reads to the end of the stream; resolves with the error it ended with. */
  async end(timeoutMs = 10_000): Promise<unknown> {
    const deadline = Date.now() + timeoutMs;
    while (!this.done) await this.next(Math.max(1, deadline - Date.now()));
    return this.error;
  }

  cancel(): void {
    this.controller.abort();
    this.done = true;
    void this.iterator.return?.().catch(() => undefined);
  }
}

/** Versions of the changes (not heartbeats) among `messages`, for one entity id. */
export function changeVersions(messages: readonly SubscribeResponse[], id?: string): number[] {
  return messages.flatMap((m) => (m.message.case === "change" && (id === undefined || m.message.value.entity?.id === id) ? [Number(m.message.value.entity!.version)] : []));
}
