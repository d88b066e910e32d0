import { isMessage, type DescMethod, type Message } from "@bufbuild/protobuf";
import { SubscribeRequestSchema } from "../../gen/umw/v1/realtime_pb.js";
import type { Principal } from "../../runtime/principal.js";
import type { PolicyInput, PolicyTopic } from "./authz-policy.js";

/** `umw.v1.QueryService/GetEntity`: the policy's name of a method. */
export const methodName = (method: DescMethod): string => `${method.parent.typeName}/${method.name}`;

/** The tenant a request targets: every umw.v1 request names one in its `tenant` field; others (Health, reflection) none. */
export function requestTenants(message: Message | undefined): string[] {
  const tenant = (message as { tenant?: unknown } | undefined)?.tenant;
  return typeof tenant === "string" ? [tenant] : [];
}

/**
 * A subscription's topics as the request names them, so that a call is refused before it reaches
 * the hub (which resolves and decides them again, services/policy/subscription-policy.ts): an entity
 * topic may name another tenant; own commands are always the caller's.
 */
function requestTopics(message: Message | undefined, principal: Principal | undefined): PolicyTopic[] | undefined {
  if (!message || !isMessage(message, SubscribeRequestSchema)) return undefined;
  return message.topics.flatMap((topic): PolicyTopic[] => {
    const { target } = topic;
    switch (target.case) {
      case "entity":
        return [{ kind: "entity", tenant: target.value.tenant || message.tenant }];
      case "type":
        return [{ kind: "type", tenant: message.tenant }];
      case "ownCommands":
        return target.value ? [{ kind: "ownCommands", tenant: message.tenant, ...(principal ? { principal: principal.subject } : {}) }] : [];
      default:
        return [];
    }
  });
}

export function requestInput(method: string, message: Message | undefined, principal: Principal | undefined): PolicyInput {
  const topics = requestTopics(message, principal);
  return { method, tenants: requestTenants(message), ...(principal ? { principal } : {}), ...(topics ? { topics } : {}) };
}
