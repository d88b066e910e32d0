import { z } from "zod";

const identifier = z.string().regex(/^[a-z_][a-z0-9_]*$/, "must be a lower-case SQL identifier");

const cachePolicy = z
  .object({
    /** Lifetime of a cached entity; each write gets ±10% jitter so keys filled together expire apart. */
    ttlMs: z.number().int().positive().default(300_000),
    /** Lifetime of a cached NOT_FOUND. */
    negativeTtlMs: z.number().int().min(0).default(5_000),
    /** After expiry, how long a stale copy may still answer when the backend fails or times out. */
    staleGraceMs: z.number().int().min(0).default(60_000),
    /** XFetch beta: > 0 refreshes early in the background with a probability rising near expiry; 0 disables. */
    earlyRefreshBeta: z.number().min(0).default(1),
    /** How long one loader holds the cross-instance lease; waiters give up after it. */
    leaseMs: z.number().int().positive().default(3_000),
    /** On a domain event: write the new state into the cache, or only fence out older versions. */
    onEvent: z.enum(["write-through", "invalidate"]).default("write-through"),
    /** In-process L1 in front of Redis, kept coherent by domain events; 0 disables. */
    l1Ms: z.number().int().min(0).default(0),
  })
  .strict();

const postgresBackend = z
  .object({
    kind: z.literal("postgres"),
    table: identifier.default("umw_entities"),
    keyColumn: identifier.default("id"),
    tenantColumn: identifier.default("tenant"),
    versionColumn: identifier.default("version"),
    dataColumn: identifier.default("data"),
    /** Set when the table holds several types (the shared umw_entities table does). */
    typeColumn: identifier.optional(),
  })
  .strict();

const httpBackend = z
  .object({
    kind: z.literal("http"),
    /** e.g. http://127.0.0.1:9000/things/{tenant}/{id}; the upstream answers {version, data} JSON or 404. */
    urlTemplate: z.string().url(),
    timeoutMs: z.number().int().positive().default(2_000),
  })
  .strict();

export const resourceSchema = z
  .object({
    backend: z.discriminatedUnion("kind", [postgresBackend, httpBackend]).default({ kind: "postgres", table: "umw_entities", keyColumn: "id", tenantColumn: "tenant", versionColumn: "version", dataColumn: "data", typeColumn: "type" }),
    cache: cachePolicy.default(cachePolicy.parse({})),
    /** JSON Schema (draft 2020-12 subset that ajv supports) every written payload must match. */
    schema: z.record(z.string(), z.unknown()).default({ type: "object" }),
  })
  .strict();

export const resourcesSchema = z.record(z.string().regex(/^[a-z][a-z0-9-]{0,62}$/, "type names are lower-case, 1-63 chars"), resourceSchema);

export type ResourceConfig = z.output<typeof resourceSchema>;
export type CachePolicy = ResourceConfig["cache"];
export type Resources = Readonly<Record<string, ResourceConfig>>;
