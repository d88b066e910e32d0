/**
 * The one place credentials are taken out of text before it is printed or logged: config errors,
 * every log line (runtime/logger.ts: pino `redact` plus serializers and a message hook), startup
 * lines and failure messages.
 *
 * - Any `scheme://user:password@` in a text keeps the user and loses the password (`***`), valid
 *   URL or not: Postgres, Redis, Kafka or any other.
 * - Every secret value the process knows (passwords of URLs and of settings marked secret, the
 *   contents of `*_FILE` secrets, Postgres role passwords) is registered with `registerSecret` and
 *   replaced wherever it appears, even outside a URL (a driver echoing a password in its message).
 */
export const REDACTED = "***";

const secrets = new Set<string>();

/** Secrets shorter than this are not searched for in free text (a 1-character "password" would blank out the log). */
const MIN_SECRET_LENGTH = 4;

/** Registers a value to be redacted from every text redactText sees (and its percent-encoded form). */
export function registerSecret(value: string | undefined): void {
  if (!value || value.length < MIN_SECRET_LENGTH) return;
  secrets.add(value);
  const encoded = encodeURIComponent(value);
  if (encoded !== value) secrets.add(encoded);
}

/** Registers the password of a URL (a no-op for one without, or for a text that is no URL). */
export function registerUrlSecret(url: string | undefined): void {
  if (!url) return;
  try {
    const parsed = new URL(url);
    if (parsed.password) {
      registerSecret(parsed.password);
      registerSecret(decodeURIComponent(parsed.password));
    }
  } catch {
    const match = USERINFO.exec(url);
    USERINFO.lastIndex = 0;
    if (match?.[3]) registerSecret(match[3]);
  }
}

/** `scheme://user:password@` — the password is everything up to the last `@` before the host part. */
const USERINFO = /([a-z][a-z0-9+.-]*:\/\/)([^\s:/@]*):([^\s/]*)@/gi;

/** The URL with its password replaced by `***`; the rest (user, host, database) is kept for diagnosis. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = REDACTED;
    return redactText(parsed.toString());
  } catch {
    return redactText(url);
  }
}

/** The text with every URL password and every registered secret replaced by `***`. */
export function redactText(text: string): string {
  let out = text.replace(USERINFO, (_all, scheme: string, user: string) => `${scheme}${user}:${REDACTED}@`);
  for (const secret of secrets) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  return out;
}

/** Redacts strings anywhere in plain objects and arrays (log bindings, error metadata); other values are kept. */
export function redactValue(value: unknown, depth = 0): unknown {
  if (typeof value === "string") return redactText(value);
  if (depth > 8 || value === null || typeof value !== "object") return value;
  if (value instanceof Error) return redactError(value);
  if (Array.isArray(value)) return value.map((item) => redactValue(item, depth + 1));
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return value; // class instances (Buffer, Metadata, ...) as they are
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) out[key] = SECRET_KEY.test(key) && typeof item === "string" ? REDACTED : redactValue(item, depth + 1);
  return out;
}

/** Keys whose string value is a credential whatever it looks like. */
export const SECRET_KEY = /^(password|passwd|pass|secret|token|apikey|api_key|authorization|sasl_?password|requirepass)$/i;

/** A copy of the error (name, message, stack, code and other own fields) with credentials redacted; the original is left alone. */
export function redactError(error: Error): Error {
  const copy = new Error(redactText(error.message));
  copy.name = error.name;
  copy.stack = error.stack === undefined ? undefined : redactText(error.stack);
  for (const [key, item] of Object.entries(error)) {
    (copy as unknown as Record<string, unknown>)[key] = SECRET_KEY.test(key) && typeof item === "string" ? REDACTED : redactValue(item, 1);
  }
  if (error.cause !== undefined) copy.cause = error.cause instanceof Error ? redactError(error.cause) : redactValue(error.cause, 1);
  return copy;
}
