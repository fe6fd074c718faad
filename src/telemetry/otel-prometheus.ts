// The Prometheus pull endpoint: an exporter reader served from our own HTTP server.
import { createServer, type Server } from 'node:http';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';

export interface PrometheusEndpoint {
  reader: PrometheusExporter;
  /** The bound port (the requested one, or the one the OS picked for 0). */
  port: number;
  close(): Promise<void>;
}

export const METRICS_PATH = '/metrics';
const HTTP_NOT_FOUND = 404;

// The exporter's built-in server treats port 0 as "use 9464" and only logs a failed bind; serving it
// ourselves gives port 0, a bind error the caller sees, and a close that also drops keep-alive scrapes.
export async function servePrometheus(host: string, port: number): Promise<PrometheusEndpoint> {
  const reader = new PrometheusExporter({ preventServerStart: true });
  const server = createServer((req, res) => {
    if (new URL(req.url ?? '/', 'http://localhost').pathname === METRICS_PATH && (req.method === 'GET' || req.method === 'HEAD')) {
      reader.getMetricsRequestHandler(req, res);
    } else {
      res.statusCode = HTTP_NOT_FOUND;
      res.end();
    }
  });
  const bound = await listen(server, host, port);
  // A forgotten shutdown must not keep the process alive; the gRPC server is what does that.
  server.unref();
  return {
    reader,
    port: bound,
    close: () =>
      new Promise<void>((ok) => {
        server.close(() => ok());
        server.closeAllConnections();
      }),
  };
}

function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen({ host, port }, () => {
      server.off('error', fail);
      const address = server.address();
      ok(typeof address === 'object' && address !== null ? address.port : port);
    });
  });
}
