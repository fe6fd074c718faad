// `narrowtune health --help`, apart from the command so that printing it loads no gRPC.
import { SERVER_DEFAULTS } from '../service/server-defaults.js';

export const HEALTH_HELP = `Usage: narrowtune health [--target HOST:PORT] [--service NAME] [--timeout-ms N]

Checks grpc.health.v1 on a narrowtune server (default ${SERVER_DEFAULTS.host}:${SERVER_DEFAULTS.port}, service "" =
the whole server). Prints the status; exits 0 only when it is SERVING. Used by the Docker HEALTHCHECK.
`;
