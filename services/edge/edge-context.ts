import { createRegistry, type DescFile, type DescService, type Registry } from "@bufbuild/protobuf";
import { file_google_rpc_error_details } from "../../gen/google/rpc/error_details_pb.js";
import { file_google_rpc_status } from "../../gen/google/rpc/status_pb.js";
import type { Logger } from "../../runtime/logger.js";
import type { ResolvedEdgeOptions } from "./options.js";
import type { Upstream } from "./upstream.js";

/** What the edge's handlers share: settings, upstream channels, the JSON type registry, shutdown. */
export interface EdgeContext {
  readonly options: ResolvedEdgeOptions;
  /** By service type name, e.g. `umw.v1.QueryService`. */
  readonly upstreams: ReadonlyMap<string, Upstream>;
  /** Every message type of the services and their imports, and the google.rpc error details: for Any in JSON. */
  readonly registry: Registry;
  readonly log: Logger;
  /** Aborted when the edge stops: streams end with UNAVAILABLE so clients reconnect elsewhere. */
  readonly shutdown: AbortSignal;
}

/** A registry of the services' files, their imports (transitively), and the google.rpc error details. */
export function typeRegistry(services: readonly DescService[]): Registry {
  const files = new Map<string, DescFile>();
  const visit = (file: DescFile) => {
    if (files.has(file.name)) return;
    files.set(file.name, file);
    for (const dependency of file.dependencies) visit(dependency);
  };
  for (const service of services) visit(service.file);
  visit(file_google_rpc_error_details);
  visit(file_google_rpc_status);
  return createRegistry(...files.values());
}
