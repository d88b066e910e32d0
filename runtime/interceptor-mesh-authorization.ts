import type { ServerInterceptor } from "./interceptor.js";
import type { MeshAuthorization } from "./mesh-authorization.js";
import { methodPath } from "./service-definition.js";

/** Server: refuses a call its mTLS peer may not make, or a principal it may not assert, before the handler runs. */
export function serverMeshAuthorization(authorization: MeshAuthorization): ServerInterceptor {
  return (next) => async (req) => {
    const denied = authorization.check({ peer: req.context.peer, method: methodPath(req.method).slice(1), headers: req.context.headers });
    if (denied) {
      req.context.log.warn({ peer: req.context.peer, reason: denied.reason }, "mesh call refused");
      throw denied;
    }
    return next(req);
  };
}
