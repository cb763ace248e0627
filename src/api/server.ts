/** The HTTP server: express app with request logging, the v1 routes, health and readiness. */
import * as http from "node:http";
import express from "express";
import { pinoHttp } from "pino-http";
import type { Logger } from "pino";
import { LedgerError } from "../util/errors";
import { errorHandler } from "./errors";
import { RouteDeps, v1Routes } from "./routes";
import { createMetrics } from "./metrics";

export function createApp(deps: RouteDeps, logger: Logger): express.Express {
  const app = express();
  app.disable("x-powered-by");
  app.set("query parser", "simple");
  app.use(pinoHttp({ logger, autoLogging: { ignore: (req) => req.url === "/health" } }));
  app.get("/health", (_req, res) => {
    res.json({ status: "ok" });
  });
  app.get("/ready", (_req, res) => {
    const s = deps.node.status();
    res.status(s.last_applied === s.commit_index ? 200 : 503).json({ ready: s.last_applied === s.commit_index, ...s });
  });
  const metrics = createMetrics(deps.node);
  app.get("/metrics", async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  app.use("/v1", v1Routes({ ...deps, metrics }));
  app.use(() => {
    throw new LedgerError("not_found", "no such route");
  });
  app.use(errorHandler(logger));
  return app;
}

/** Listens on host:port (0 picks a free port) and resolves with the bound port. */
export function listen(app: express.Express, host: string, port: number): Promise<{ server: http.Server; port: number }> {
  return new Promise((resolve, reject) => {
    const server = http.createServer(app);
    server.once("error", reject);
    server.listen(port, host, () => {
      const addr = server.address();
      if (addr === null || typeof addr === "string") {
        reject(new Error("server has no TCP address"));
        return;
      }
      resolve({ server, port: addr.port });
    });
  });
}
