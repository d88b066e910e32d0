import { pino } from "pino";
import { RateLimiter } from "/work/wt/ratelimit/services/ratelimit/limiter.ts";
import { DEFAULT_RULES } from "/work/wt/ratelimit/services/ratelimit/rules.ts";
const l = new RateLimiter({ redisUrl: "redis://127.0.0.1:16379", keyPrefix: `dbg:${Date.now()}:`, rules: { ...DEFAULT_RULES, principal: { rps: 0.1, burst: 2 } }, failureMode: "open", log: pino() });
for (let i = 0; i < 4; i++) console.log(JSON.stringify(await l.check({ tenant: "t1", subject: "s", route: "r" })));
await l.close();
