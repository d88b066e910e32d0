import { createServer } from "node:http";
import type { ServiceModule } from "../../runtime/service.js";

/** Skeleton: answers /healthz until REST and gRPC-web/Connect translation lands. */
export const edgeService: ServiceModule = {
  name: "edge",
  description: "Public edge: REST, gRPC-web and Connect to internal gRPC over mTLS",
  async start(runtime) {
    const server = createServer((req, res) => {
      const ok = req.url === "/healthz";
      res.writeHead(ok ? 200 : 404, { "content-type": "application/json" });
      res.end(ok ? '{"status":"SERVING"}' : '{"code":5,"message":"not found"}');
    });
    await new Promise<void>((resolve) => server.listen(runtime.config.edgePort, runtime.config.host, resolve));
    runtime.log.info({ port: runtime.config.edgePort }, "edge listening");
    return { name: "edge", stop: () => new Promise<void>((resolve) => server.close(() => resolve())) };
  },
};
