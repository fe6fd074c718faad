// `narrowtune health --help`, apart from the command so that printing it loads no gRPC.
import { SERVER_DEFAULTS } from '../service/server-defaults.js';
import { CLIENT_FLAGS_HELP } from './client-help.js';

export const HEALTH_HELP = `Usage: narrowtune health [--service NAME] [--timeout-ms N] [connection options]

Checks grpc.health.v1 on a narrowtune server (default ${SERVER_DEFAULTS.host}:${SERVER_DEFAULTS.port}, service "" =
the whole server). Prints the status; exits 0 only when it is SERVING. Used by the Docker HEALTHCHECK.

${CLIENT_FLAGS_HELP}
  --tls-no-verify         TLS without checking the server's certificate, for a probe inside the server's
                          own host or container; sends no API key (health needs none)
`;
