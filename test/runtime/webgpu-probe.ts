// Whether this machine can run onnxruntime's WebGPU provider (a Vulkan device: a GPU, or Mesa's lavapipe).
import { GraphBuilder } from '../../src/graph/graph-builder.js';
import { createSession } from '../../src/runtime/session.js';

/** null when WebGPU works; else why not. */
export async function webgpuUnavailable(): Promise<string | null> {
  const g = new GraphBuilder('webgpu-probe');
  const x = g.input('x', 'float32', [2]);
  g.output(g.add(x, x), 'y');
  try {
    const h = await createSession(g.toModel(), 'webgpu');
    await h.session.release();
    return null;
  } catch (e) {
    return (e as Error).message.slice(0, 300);
  }
}

/** CI sets NARROWTUNE_REQUIRE_WEBGPU=1 (it installs lavapipe): there a missing Vulkan device fails the test. */
export const WEBGPU_REQUIRED = process.env.NARROWTUNE_REQUIRE_WEBGPU === '1';
