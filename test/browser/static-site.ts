import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { build } from "esbuild";

/** The page test/browser/page.ts, bundled for the browser (esbuild, in memory). */
export async function bundlePage(): Promise<string> {
  const result = await build({
    entryPoints: [new URL("./page.ts", import.meta.url).pathname],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "chrome120",
    write: false,
    logLevel: "silent",
  });
  return result.outputFiles[0]!.text;
}

export interface StaticSite {
  /** `http://127.0.0.1:port`: the page's origin. */
  readonly origin: string;
  close(): Promise<void>;
}

/** A tiny static server on a loopback port: `/` is the page, `/page.js` its bundle. */
export async function serveStaticSite(script: string, title: string): Promise<StaticSite> {
  const html = `<!doctype html><meta charset="utf-8"><title>${title}</title>
<style>body{font:13px monospace;margin:12px}h1{font-size:15px}</style>
<h1>${title}</h1><pre id="log"></pre><script type="module" src="/page.js"></script>`;
  const server: Server = createServer((req, res) => {
    if (req.url === "/") res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(html);
    else if (req.url === "/page.js") res.writeHead(200, { "content-type": "text/javascript" }).end(script);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}
