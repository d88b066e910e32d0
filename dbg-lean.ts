import { pino } from "pino";
import { QueryService } from "./gen/umw/v1/query_pb.js";
import { MeshServer } from "./runtime/server.js";
import { clientCredentials, clientTlsOf, serverCredentials } from "./runtime/tls.js";
import { ServiceClient } from "./runtime/client.js";
import { Http2UnaryTransport } from "./runtime/http2-unary-transport.js";
import { testCerts } from "./test/support/certs.js";
const certs = testCerts(["query", "edge"]);
const log = pino({ level: "silent" });
const query = new MeshServer({ name: "query", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("query")), log });
query.addService(QueryService, { async getEntity(r) { return { entity: { id: r.id } }; }, async batchGetEntities() { return {}; }, async listEntities() { return {}; } } as never);
const port = await query.start();
const creds = clientCredentials(certs.identity("edge"));
const t = new Http2UnaryTransport(`127.0.0.1:${port}`, { tls: clientTlsOf(creds) });
const c = new ServiceClient(QueryService, `127.0.0.1:${port}`, creds, { unaryTransport: t });
try { console.log(await c.unary(QueryService.method.getEntity, { tenant: "a", type: "b", id: "x" })); } catch (e) { console.log("ERR", e, (e as any).cause); }
c.close(); await query.stop(); certs.remove();
