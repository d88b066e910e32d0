import { randomBytes } from "node:crypto";
import { loadConfig, type Config } from "../../runtime/config.js";

/** Infra URLs as scripts/infra.sh starts them (overridable with the same UMW_* variables). */
export const infra: Pick<Config, "redisUrl" | "pgUrl" | "pgReplicaUrl" | "kafkaBrokers"> = loadConfig({
  ...process.env,
  UMW_CONFIG: "",
});

/** A short random suffix that keeps names of one test run apart from every other run. */
export function runId(): string {
  return randomBytes(5).toString("hex");
}
