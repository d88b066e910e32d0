import { Code } from "./errors.js";

/** What a reason means to the caller: its gRPC code(s), the HTTP status if it differs from the code's, and why it is raised. */
export interface ReasonSpec {
  /** The gRPC code(s) raised with this reason; the first is the usual one. */
  readonly codes: readonly [Code, ...Code[]];
  /** The HTTP status when the edges answer something other than the code's standard mapping. */
  readonly httpStatus?: number;
  readonly meaning: string;
}

/** A reason's spec, keeping its codes as literal types so that RpcError can check a code against its reason. */
function reason<const C extends Code | readonly [Code, ...Code[]]>(
  codes: C,
  meaning: string,
  httpStatus?: number,
): ReasonSpec & { readonly codes: C extends Code ? readonly [C] : C } {
  return { codes: (typeof codes === "number" ? [codes] : codes) as C extends Code ? readonly [C] : C, meaning, ...(httpStatus === undefined ? {} : { httpStatus }) };
}

/**
 * Every google.rpc.ErrorInfo reason umw raises (domain `umw.dev`), declared once. docs/errors.md is
 * rendered from this table (`npm run gen:docs`), and runtime/reasons.test.ts fails when an error
 * constructor under runtime/ or services/ uses a reason that is not declared here.
 */
export const REASONS = {
  // Generic: a failure that carries no ErrorInfo of its own gets its code's name as the reason.
  INTERNAL: reason(Code.INTERNAL, "A bug or an unexpected failure; the caller learns nothing more."),
  UNKNOWN: reason(Code.UNKNOWN, "A failure whose code is unknown (an upstream or a stored status without ErrorInfo)."),
  CANCELLED: reason(Code.CANCELLED, "The caller cancelled the call, or the load it waited for was cancelled."),
  DEADLINE_EXCEEDED: reason(Code.DEADLINE_EXCEEDED, "The call's deadline expired before an answer."),
  INVALID_ARGUMENT: reason(Code.INVALID_ARGUMENT, "The edge could not bind the request to the method's input message."),
  UNIMPLEMENTED: reason(Code.UNIMPLEMENTED, "No such method (Connect)."),
  SHUTTING_DOWN: reason(Code.UNAVAILABLE, "The service or edge is draining; retry against another instance."),

  // Entities and resource types.
  INVALID_TENANT: reason(Code.INVALID_ARGUMENT, "A tenant name that is not well formed (1-128 of A-Z a-z 0-9 . _ ~ -)."),
  INVALID_ID: reason(Code.INVALID_ARGUMENT, "An entity id that is not well formed (1-128 of A-Z a-z 0-9 . _ ~ -)."),
  INVALID_TYPE: reason(Code.INVALID_ARGUMENT, "A resource type name that is not well formed."),
  UNKNOWN_RESOURCE_TYPE: reason(Code.NOT_FOUND, "No resource type of that name is configured."),
  ENTITY_NOT_FOUND: reason(Code.NOT_FOUND, "The entity does not exist in the tenant."),
  ENTITY_ALREADY_EXISTS: reason(Code.ALREADY_EXISTS, "A create named an entity id that already exists."),
  VERSION_CONFLICT: reason(Code.FAILED_PRECONDITION, "The entity moved to another version between accept and apply."),

  // Commands: accept.
  IDEMPOTENCY_KEY_MISSING: reason(Code.INVALID_ARGUMENT, "A write without an idempotency key."),
  IDEMPOTENCY_KEY_INVALID: reason(Code.INVALID_ARGUMENT, "An idempotency key that is not well formed."),
  IDEMPOTENCY_KEY_IN_USE: reason(Code.ABORTED, "A request with this key is still being processed; retry later (retry-after)."),
  IDEMPOTENCY_KEY_REUSED: reason(Code.FAILED_PRECONDITION, "The key was already used for a different request; use a new key.", 422),
  PRECONDITION_FAILED: reason(Code.FAILED_PRECONDITION, "If-Match / If-None-Match / expected_version did not hold; metadata current_version.", 412),
  INVALID_PRECONDITION: reason(Code.INVALID_ARGUMENT, "An If-Match / If-None-Match header that is not * or a list of entity tags."),
  INVALID_EXPECTED_VERSION: reason(Code.INVALID_ARGUMENT, "expected_version is negative."),
  INVALID_UPDATE_MASK: reason(Code.INVALID_ARGUMENT, "An update_mask path that the payload or schema does not have."),
  INVALID_COMMAND_ID: reason(Code.INVALID_ARGUMENT, "A command id that is not a UUID."),
  SCHEMA_VIOLATION: reason(Code.INVALID_ARGUMENT, "The payload (or the entity after a patch) does not match the resource type's JSON Schema."),
  PAYLOAD_TOO_LARGE: reason(Code.INVALID_ARGUMENT, "The payload (or the entity after a patch) exceeds the size limit."),
  PAYLOAD_TOO_DEEP: reason(Code.INVALID_ARGUMENT, "The payload nests objects and arrays deeper than the limit."),
  NUMBER_OUT_OF_RANGE: reason(Code.INVALID_ARGUMENT, "A payload number that is not a finite double."),
  INVALID_CHARACTER: reason(Code.INVALID_ARGUMENT, "A payload key or string holding a character umw refuses (such as U+0000)."),
  INVALID_UNICODE: reason(Code.INVALID_ARGUMENT, "A payload key or string holding a lone surrogate."),
  RESERVED_KEY: reason(Code.INVALID_ARGUMENT, "A payload key or update_mask path segment `__proto__`, `constructor` or `prototype` (at any depth)."),
  TRANSACTION_CONFLICT: reason(Code.ABORTED, "The write conflicted with a concurrent one (serialization failure, deadlock); retry."),
  DATABASE_UNAVAILABLE: reason(Code.UNAVAILABLE, "The primary database cannot be reached or is read-only (failover); retry."),
  COMMAND_NOT_FOUND: reason(Code.NOT_FOUND, "No command of that id in the tenant."),

  // Commands: apply (the status of a command that failed).
  COMMAND_DEAD_LETTERED: reason([Code.UNAVAILABLE, Code.INTERNAL], "The processor set the command aside as a dead letter; metadata cause and attempts."),

  // Reads.
  INVALID_MIN_VERSION: reason(Code.INVALID_ARGUMENT, "min_version is negative."),
  INVALID_PAGE_SIZE: reason(Code.INVALID_ARGUMENT, "page_size is negative."),
  INVALID_PAGE_TOKEN: reason(Code.INVALID_ARGUMENT, "page_token is not one this list returned."),
  BATCH_TOO_LARGE: reason(Code.INVALID_ARGUMENT, "A batch get with more ids than allowed."),
  LIST_NOT_SUPPORTED: reason(Code.UNIMPLEMENTED, "The resource type's backend cannot list."),
  REPLICA_LAGGING: reason(Code.UNAVAILABLE, "The replica has not caught up with the version asked for; retry."),
  LOAD_TIMEOUT: reason(Code.UNAVAILABLE, "No cache fill arrived in time (another reader's load); retry."),
  BACKEND_TIMEOUT: reason(Code.UNAVAILABLE, "The backend of a resource type did not answer in time; retry."),
  BACKEND_UNAVAILABLE: reason(Code.UNAVAILABLE, "The backend of a resource type is not reachable; retry."),
  BACKEND_ERROR: reason(Code.INTERNAL, "The backend of a resource type failed; metadata sqlstate for Postgres."),
  UPSTREAM_ERROR: reason(Code.UNAVAILABLE, "An HTTP backend answered an error status; metadata httpStatus."),
  UPSTREAM_BAD_RESPONSE: reason(Code.UNAVAILABLE, "An HTTP backend answered a body umw cannot read."),
  CACHE_UNAVAILABLE: reason(Code.UNAVAILABLE, "A cache write failed."),

  // Realtime.
  NO_TOPICS: reason(Code.INVALID_ARGUMENT, "A subscription with no topics."),
  EMPTY_TOPIC: reason(Code.INVALID_ARGUMENT, "A topic that names nothing."),
  TOO_MANY_TOPICS: reason(Code.INVALID_ARGUMENT, "More topics in one stream than allowed."),
  INVALID_RESUME_TOKEN: reason(Code.INVALID_ARGUMENT, "resume_token is not a position this service wrote."),
  HISTORY_EXCEEDED: reason(Code.OUT_OF_RANGE, "Cannot resume from that position: the history no longer reaches back; resubscribe with a snapshot."),
  SNAPSHOT_UNAVAILABLE: reason(Code.UNAVAILABLE, "The current state or command statuses cannot be read now; retry."),
  SLOW_CONSUMER: reason(Code.RESOURCE_EXHAUSTED, "The client reads too slowly; resume from metadata position."),
  TOO_MANY_STREAMS_PER_CONNECTION: reason(Code.RESOURCE_EXHAUSTED, "More concurrent streams on one connection than allowed."),
  TOO_MANY_STREAMS_PER_TENANT: reason(Code.RESOURCE_EXHAUSTED, "More concurrent streams for the tenant than allowed."),
  COMMANDS_NOT_AVAILABLE: reason(Code.UNIMPLEMENTED, "This hub does not follow command statuses."),
  NO_PRINCIPAL: reason(Code.UNAUTHENTICATED, "Following own commands needs an authenticated principal."),
  TOKEN_EXPIRED: reason(Code.UNAUTHENTICATED, "The caller's token expired (at subscribe, or during the stream)."),
  CROSS_TENANT_SUBSCRIPTION: reason(Code.PERMISSION_DENIED, "A topic in another tenant than the caller's."),
  FOREIGN_COMMANDS: reason(Code.PERMISSION_DENIED, "Following commands that are not the caller's own."),

  // Authorization (policy/authz.rego, evaluated by services/policy on every call and at Envoy).
  PRINCIPAL_REQUIRED: reason(Code.UNAUTHENTICATED, "The call carries no principal (no token at the edge, no mTLS identity) and the method needs one."),
  TENANT_REQUIRED: reason(Code.PERMISSION_DENIED, "The caller's token names no tenant."),
  CROSS_TENANT_ACCESS: reason(Code.PERMISSION_DENIED, "The request (or a subscription topic) targets another tenant than the caller's; metadata tenants."),
  MISSING_SCOPE: reason(Code.PERMISSION_DENIED, "The caller's token lacks the scope the operation needs; metadata scope."),
  OPERATION_NOT_ALLOWED: reason(Code.PERMISSION_DENIED, "A user principal called a method that is not a public operation (reflection, control plane)."),
  PERMISSION_DENIED: reason(Code.PERMISSION_DENIED, "The policy refused the call without naming a reason."),
  // The canary (umw canary, serve canary).
  CANARY_TIMEOUT: reason(Code.DEADLINE_EXCEEDED, "The canary's end-to-end transaction (write, apply, read back, hear on a subscription) took longer than its timeout."),
  // Mesh authorization (UMW_MESH_AUTHZ, UMW_TRUSTED_PRINCIPAL_PEERS).
  MESH_METHOD_DENIED: reason(Code.PERMISSION_DENIED, "The caller's mesh identity (its certificate) may not call this method (UMW_MESH_AUTHZ)."),
  PRINCIPAL_ASSERTION_DENIED: reason(Code.PERMISSION_DENIED, "A mesh peer that is not a trusted edge (UMW_TRUSTED_PRINCIPAL_PEERS) sent `x-umw-principal` or another header that asserts who the call acts for."),
  // Authentication at the edges.
  TOKEN_MISSING: reason(Code.UNAUTHENTICATED, "No bearer token: send `Authorization: Bearer <token>` (401 with `WWW-Authenticate`)."),
  TOKEN_INVALID: reason(Code.UNAUTHENTICATED, "The bearer token is malformed, not signed by a key of the issuer, signed with an algorithm not allowed, or for another issuer or audience."),
  TOKEN_CLAIM_MISSING: reason(Code.UNAUTHENTICATED, "The verified token lacks the subject or tenant claim the edge is configured to read."),
  ISSUER_UNAVAILABLE: reason(Code.UNAVAILABLE, "The token issuer's discovery document or JWKS cannot be fetched; retry."),
  TENANT_MISMATCH: reason(Code.PERMISSION_DENIED, "The request names another tenant than the caller's token grants."),

  // Control plane.
  UNKNOWN_SERVICE: reason(Code.INVALID_ARGUMENT, "A registration for a service the mesh does not route."),
  INVALID_PORT: reason(Code.INVALID_ARGUMENT, "A registration with a port outside 1-65535."),
  NOT_THIS_SERVICE: reason(Code.PERMISSION_DENIED, "A peer registering for a service its certificate does not name."),
  DEREGISTER_FAILED: reason(Code.INTERNAL, "Deregistration failed."),

  // Dependencies at start.
  POSTGRES_UNREACHABLE: reason(Code.UNAVAILABLE, "Postgres could not be reached at start."),
  REDIS_UNREACHABLE: reason(Code.UNAVAILABLE, "Redis could not be reached at start."),
  KAFKA_UNREACHABLE: reason(Code.UNAVAILABLE, "Kafka could not be reached at start."),

  // Edge (HTTP, REST, Connect).
  UPSTREAM_UNAVAILABLE: reason(Code.UNAVAILABLE, "The service behind the edge is not reachable; metadata service."),
  UPSTREAM_TIMEOUT: reason(Code.DEADLINE_EXCEEDED, "The service behind the edge did not answer in time; metadata service."),
  UPSTREAM_CIRCUIT_OPEN: reason(Code.UNAVAILABLE, "The edge's circuit breaker for the service is open after consecutive failures: answered at once, without calling it; metadata service, Retry-After."),
  EDGE_OVERLOADED: reason(Code.UNAVAILABLE, "The edge already has its limit of calls in flight to the service (UMW_EDGE_MAX_IN_FLIGHT) and sheds this one rather than queue it; metadata service, Retry-After."),
  ROUTE_NOT_FOUND: reason(Code.NOT_FOUND, "No route for this method and path."),
  METHOD_NOT_ALLOWED: reason(Code.UNIMPLEMENTED, "The path exists, the HTTP method is not allowed on it (Allow header).", 405),
  UNSUPPORTED_MEDIA_TYPE: reason(Code.INVALID_ARGUMENT, "A content-type the route does not accept.", 415),
  BODY_TOO_LARGE: reason(Code.RESOURCE_EXHAUSTED, "The request body exceeds the edge's limit.", 413),
  MESSAGE_TOO_LARGE: reason(Code.RESOURCE_EXHAUSTED, "A Connect message exceeds the read limit."),
  URI_TOO_LONG: reason(Code.INVALID_ARGUMENT, "The request target exceeds the edge's limit.", 414),
  HEADERS_TOO_LARGE: reason(Code.INVALID_ARGUMENT, "The request headers are too large.", 431),
  MALFORMED_REQUEST: reason(Code.INVALID_ARGUMENT, "The request is not valid HTTP/1.1."),
  REQUEST_TIMEOUT: reason(Code.DEADLINE_EXCEEDED, "The request did not arrive in time.", 408),
  INVALID_REQUEST: reason(Code.INVALID_ARGUMENT, "A Connect request the protocol refuses."),
  INVALID_PATH: reason(Code.INVALID_ARGUMENT, "A request path that cannot be decoded."),
  INVALID_PATH_PARAMETER: reason(Code.INVALID_ARGUMENT, "A path parameter that does not fit its field."),
  INVALID_QUERY_PARAMETER: reason(Code.INVALID_ARGUMENT, "A query parameter that does not fit its field, or is repeated."),
  INVALID_HEADER: reason(Code.INVALID_ARGUMENT, "A header whose characters cannot be passed on as metadata."),
  INVALID_JSON: reason(Code.INVALID_ARGUMENT, "A body that is not JSON, or does not fit the input message."),
  INVALID_UTF8: reason(Code.INVALID_ARGUMENT, "A body that is not valid UTF-8."),
  INVALID_MESSAGE: reason(Code.INVALID_ARGUMENT, "A request message that cannot be decoded (Connect or gRPC-web at the edge; any gRPC call to a mesh server): garbage, truncated, invalid UTF-8, nested too deep."),
  INVALID_ENCODING: reason(Code.INVALID_ARGUMENT, "A compressed body that cannot be decompressed."),
  UNSUPPORTED_ENCODING: reason(Code.UNIMPLEMENTED, "A compression the edge does not support."),
  INVALID_TIMEOUT: reason(Code.INVALID_ARGUMENT, "A Connect timeout header that is not valid."),

  // Rate limits and quotas (both edges; services/ratelimit).
  RATE_LIMITED: reason(Code.RESOURCE_EXHAUSTED, "A rate limit or quota of the principal, route or tenant is used up; metadata policy and retry_after_ms, a google.rpc.RetryInfo, Retry-After and RateLimit headers.", 429),
  RATE_LIMITER_UNAVAILABLE: reason(Code.UNAVAILABLE, "The rate limiter's Redis cannot be reached and UMW_RATE_LIMIT_FAILURE_MODE is closed; retry."),

  // Envoy's local replies (services/control-plane/local-replies.ts).
  AUTHORIZATION_UNAVAILABLE: reason(Code.UNAVAILABLE, "Envoy's ext_authz got no answer from the policy service in time (500 ms) or at all; the call was not let through; retry (Retry-After)."),
} as const satisfies Record<string, ReasonSpec>;

export type Reason = keyof typeof REASONS;

/** The gRPC code(s) a reason may be raised with: `new RpcError(code, reason, ...)` does not compile with any other. */
export type CodeOf<R extends Reason> = (typeof REASONS)[R]["codes"][number];

/** The reasons as constants: `Reason.ENTITY_NOT_FOUND`. */
export const Reason = Object.fromEntries(Object.keys(REASONS).map((name) => [name, name])) as { readonly [K in Reason]: K };

export function isReason(value: string): value is Reason {
  return Object.hasOwn(REASONS, value);
}
