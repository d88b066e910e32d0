import { z } from "zod";
import { readSettings } from "../relay/settings.js";

const int = (min: number) => z.coerce.number().int().min(min);

/** Command settings not (yet) in runtime/config.ts, read from the environment with their defaults. */
const settings = {
  idempotencyTtlMs: { env: "UMW_IDEMPOTENCY_TTL_MS", schema: int(1_000).default(86_400_000) },
  idempotencySweepMs: { env: "UMW_IDEMPOTENCY_SWEEP_MS", schema: int(100).default(60_000) },
  watchPollMs: { env: "UMW_COMMAND_WATCH_POLL_MS", schema: int(50).default(1_000) },
  /** mTLS peers allowed to assert the caller's principal in x-umw-principal. */
  trustedPrincipalPeers: {
    env: "UMW_TRUSTED_PRINCIPAL_PEERS",
    schema: z
      .string()
      .default("edge")
      .transform((value) => value.split(",").map((peer) => peer.trim()).filter(Boolean)),
  },
} as const;

export interface CommandSettings {
  readonly idempotencyTtlMs: number;
  readonly idempotencySweepMs: number;
  readonly watchPollMs: number;
  readonly trustedPrincipalPeers: readonly string[];
}

export function commandSettings(env: NodeJS.ProcessEnv = process.env): CommandSettings {
  return readSettings(settings, env) as unknown as CommandSettings;
}
