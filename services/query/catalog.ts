import { checkType } from "../../runtime/entity.js";
import { notFound } from "../../runtime/errors.js";
import { resourceSchema, type CachePolicy, type Resources } from "../../runtime/resources.js";
import type { EntityBackend } from "./backend.js";
import { HttpBackend } from "./http-backend.js";
import { PostgresBackend, type ReplicaDatabase } from "./postgres-backend.js";

/** One readable resource type: where it lives and how it is cached. */
export interface Resource {
  readonly type: string;
  readonly backend: EntityBackend;
  readonly policy: CachePolicy;
}

/** The resource types QueryService serves. An unknown type is NOT_FOUND (UNKNOWN_RESOURCE_TYPE), never a crash. */
export class ResourceCatalog {
  private readonly resources = new Map<string, Resource>();

  constructor(resources: Iterable<Resource>) {
    for (const resource of resources) this.resources.set(resource.type, resource);
  }

  /** From explicit backends (tests, benchmarks); policies default like the config's. */
  static of(types: Readonly<Record<string, { backend: EntityBackend; policy?: Partial<CachePolicy> }>>): ResourceCatalog {
    return new ResourceCatalog(Object.entries(types).map(([type, { backend, policy }]) => ({ type, backend, policy: cachePolicy(policy) })));
  }

  /** Checks the type's syntax (INVALID_ARGUMENT), then that it is configured (NOT_FOUND). */
  resolve(type: string): Resource {
    checkType(type);
    const resource = this.resources.get(type);
    if (!resource) throw notFound("UNKNOWN_RESOURCE_TYPE", `resource type ${JSON.stringify(type)} is not configured`, { type });
    return resource;
  }

  /** The configured type, or undefined (no checks, no error). */
  find(type: string): Resource | undefined {
    return this.resources.get(type);
  }

  get types(): string[] {
    return [...this.resources.keys()];
  }
}

/** A complete cache policy: the config defaults with `overrides` applied. */
export function cachePolicy(overrides: Partial<CachePolicy> = {}): CachePolicy {
  return resourceSchema.parse({ cache: overrides }).cache;
}

/** Backends from config.resources; every postgres type reads through `replica()` (one shared database). */
export function catalogFromConfig(resources: Resources, replica: () => ReplicaDatabase): ResourceCatalog {
  return new ResourceCatalog(
    Object.entries(resources).map(([type, resource]) => {
      const { backend } = resource;
      return {
        type,
        policy: resource.cache,
        backend: backend.kind === "postgres" ? new PostgresBackend(replica(), backend) : new HttpBackend({ urlTemplate: backend.urlTemplate, timeoutMs: backend.timeoutMs }),
      };
    }),
  );
}
