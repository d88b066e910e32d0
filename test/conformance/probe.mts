import { writeFileSync } from "node:fs";
import { startStack } from "./stack.js";
const s = await startStack();
console.log(JSON.stringify({ node: s.node, envoy: s.envoy }));
process.on("SIGTERM", async () => { await s.stop(); process.exit(0); });
setInterval(() => writeFileSync("/tmp/probe.log", s.output()), 1000);
