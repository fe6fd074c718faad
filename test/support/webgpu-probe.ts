// Run as a script: exits 0 when onnxruntime's WebGPU provider gets a Vulkan device here (a GPU, or Mesa's
// lavapipe), else prints why not and exits 1. A child process, so a test worker never loads Dawn to find out.
import { GraphBuilder } from '../../src/graph/graph-builder.js';
import { createSession } from '../../src/runtime/session.js';

const MAX_REASON = 300;

const g = new GraphBuilder('webgpu-probe');
const x = g.input('x', 'float32', [2]);
g.output(g.add(x, x), 'y');
try {
  const h = await createSession(g.toModel(), 'webgpu');
  await h.session.release();
  process.exit(0);
} catch (e) {
  const err = e as Error;
  const message = `${(err.cause as Error | undefined)?.message ?? ''}\n${err.message}`;
  // Without a device, onnxruntime's message is mostly source locations around this phrase.
  const reason = /Failed to get a WebGPU adapter[^)\n]*/.exec(message)?.[0] ?? err.message;
  process.stderr.write(`${reason.replace(/\s+/g, ' ').slice(0, MAX_REASON)}\n`);
  process.exit(1);
}
