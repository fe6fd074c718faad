// gRPC server spans from @opentelemetry/instrumentation-grpc, patched through the CommonJS module cache.
//
// Why not just register the instrumentation: it patches when `require` loads @grpc/grpc-js (a CommonJS
// package), but narrowtune imports it from ESM, and Node's ESM loader never goes through the require
// hook; the import-in-the-middle alternative needs a loader registered before the first import, which
// `narrowtune serve` (statically importing the server) cannot arrange. Both forms share one exports
// object, so requiring it once after the instrumentation is enabled patches `Server.prototype.register`
// for every server constructed later, however grpc-js was imported.
import { createRequire } from 'node:module';
import { GrpcInstrumentation } from '@opentelemetry/instrumentation-grpc';

const GRPC_MODULE = '@grpc/grpc-js';

// The instrumentation hands server-side matchers only the method's last path segment, never the service,
// so `grpc.health.v1.Health/*` and `grpc.reflection.*/ServerReflectionInfo` can only be named by method.
// TuningService has no method by these names; a test keeps it that way.
export const HEALTH_METHODS = ['Check', 'Watch', 'List'] as const;
export const REFLECTION_METHODS = ['ServerReflectionInfo'] as const;
export const IGNORED_RPC_METHODS: readonly string[] = [...HEALTH_METHODS, ...REFLECTION_METHODS];

// One per process: require-in-the-middle hands a module to the hooks once, so a second instance (a second
// initTelemetry after a shutdown) would never see grpc-js; the first re-patches on enable() instead.
let instance: GrpcInstrumentation | undefined;

export function grpcInstrumentation(): GrpcInstrumentation {
  instance ??= new GrpcInstrumentation({ enabled: false, ignoreGrpcMethods: [...IGNORED_RPC_METHODS] });
  return instance;
}

/** Call after the SDK has started: enables the hooks, then makes grpc-js pass through them. */
export function patchGrpc(instrumentation: GrpcInstrumentation): void {
  instrumentation.enable();
  createRequire(import.meta.url)(GRPC_MODULE);
}
