// onnxruntime's Linux build starts a telemetry module with a process's first session, and that module leaves an
// empty mat-debug-<pid>.log (and a .ses file) in $TMPDIR of every such process. narrowtune turns it off unless
// the user has set ORT_DISABLE_TELEMETRY. onnxruntime reads the process environment, of which a worker thread's
// process.env is only a copy, so this runs on the main thread: where sessions are made and before a worker starts.
export function disableOrtTelemetry(): void {
  process.env.ORT_DISABLE_TELEMETRY ??= '1';
}
