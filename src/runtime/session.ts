// onnxruntime-node sessions: execution-provider choice (cpu, cuda, webgpu, auto) with errors that say
// how to get a missing provider, and a cache so a graph is compiled once per (model, policy, shapes).
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import ort from 'onnxruntime-node';
import { NarrowtuneError } from '../util/errors.js';
import { disableOrtTelemetry } from '../util/ort-telemetry.js';

disableOrtTelemetry();

export type Device = 'cpu' | 'cuda' | 'webgpu' | 'auto';
export const DEVICES: readonly Device[] = ['cpu', 'cuda', 'webgpu', 'auto'];

const HOW_TO: Record<Exclude<Device, 'cpu' | 'auto'>, string> = {
  cuda:
    'the CUDA execution provider is not bundled with onnxruntime-node; fetch it with ' +
    '`ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js` on a host with network ' +
    'access, CUDA 12 and cuDNN 9 (see Dockerfile)',
  webgpu: 'the WebGPU execution provider needs a GPU with a Vulkan driver: install libvulkan1 and the GPU vendor\'s Vulkan ICD',
};

function bindingDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('onnxruntime-node/package.json')), 'bin', 'napi-v6', process.platform, process.arch);
}

/** Whether the provider's shared library is installed (CUDA ships separately from the npm package). */
export function cudaInstalled(): boolean {
  return existsSync(join(bindingDir(), 'libonnxruntime_providers_cuda.so'));
}

/**
 * Whether a GPU device node exists (Linux: /dev/nvidia0, or a DRM render node). Without one, a Vulkan device
 * can only be a software rasteriser such as Mesa's lavapipe, which runs WebGPU 14–24× slower than the CPU
 * provider on the tiny benchmark rows, so `auto` does not pick it.
 */
export function gpuPresent(): boolean {
  if (process.platform !== 'linux') return true;
  if (existsSync('/dev/nvidia0')) return true;
  try {
    return readdirSync('/dev/dri').some((n) => n.startsWith('renderD'));
  } catch {
    return false;
  }
}

export interface SessionHandle {
  session: ort.InferenceSession;
  /** The execution provider that actually runs the graph. */
  provider: 'cpu' | 'cuda' | 'webgpu';
}

export interface SessionOptions {
  profile?: string; // file prefix for ORT's profiler (chrome-trace JSON)
  intraOpThreads?: number;
  /** Skip weight prepacking: saves a copy of every frozen matrix (models over ~1 GiB) for ~2% step time. */
  lowMemory?: boolean;
  /**
   * The graph computes in float64. onnxruntime fuses x·sigmoid(x) into QuickGelu, which has a float32 kernel only;
   * a forward-only float64 SwiGLU (an LwF teacher's) would then fail to load.
   */
  float64?: boolean;
  /**
   * The graph stores frozen weights in half precision and casts them at each use. Constant folding would turn those
   * casts back into float32 initializers at load, and common-subexpression elimination would share one cast between
   * the forward and backward passes, keeping a float32 copy alive: both are turned off.
   */
  halfWeights?: boolean;
}

/**
 * How a graph lowers the ops that have a fused onnxruntime kernel (src/graph/graph-builder.ts emits both):
 * declared here because which one runs best depends on the provider (kernelsFor).
 */
export type Kernels = 'fused' | 'portable';

/** A serialised model whose large initializers travel beside the protobuf (onnxruntime's `externalData`). */
export interface ModelWithExternalData {
  bytes: Uint8Array;
  externalData: { path: string; data: Uint8Array }[];
}

export type ModelBytes = Uint8Array | ModelWithExternalData;

async function createWith(model: ModelBytes, provider: SessionHandle['provider'], opts: SessionOptions): Promise<SessionHandle> {
  const executionProviders = provider === 'cpu' ? ['cpu'] : [provider, 'cpu'];
  // Memory patterns made ORT keep a planned block beside the first run's arena allocations:
  // disabling them cut medium's peak RSS 1450 → 1086 MB at unchanged step time (bench/README.md).
  const options: ort.InferenceSession.SessionOptions = { executionProviders, graphOptimizationLevel: 'all', enableMemPattern: false };
  // `extra` keys are flattened with dots into onnxruntime's session config entries.
  if (opts.lowMemory) options.extra = { session: { disable_prepacking: '1' } };
  const disabled = [...(opts.float64 ? ['QuickGeluFusion'] : []), ...(opts.halfWeights ? ['ConstantFolding', 'CommonSubexpressionElimination'] : [])];
  if (disabled.length > 0) options.extra = { ...options.extra, optimization: { disable_specified_optimizers: disabled.join(',') } };
  const bytes = model instanceof Uint8Array ? model : model.bytes;
  if (!(model instanceof Uint8Array) && model.externalData.length > 0) options.externalData = model.externalData;
  if (opts.profile !== undefined) Object.assign(options, { enableProfiling: true, profileFilePrefix: opts.profile });
  if (opts.intraOpThreads !== undefined) options.intraOpNumThreads = opts.intraOpThreads;
  const session = await ort.InferenceSession.create(bytes, options);
  return { session, provider };
}

/**
 * The lowering each provider runs fastest. WebGPU has no kernel for Attention-23 or SoftmaxCrossEntropyLoss
 * (tiny model on lavapipe: 13 nodes on the CPU and 17–18 device↔host copies per training step with 'fused',
 * 4 small int64 nodes and 4 copies with 'portable'). CUDA keeps 'fused': it has not been profiled.
 */
export function kernelsFor(provider: SessionHandle['provider']): Kernels {
  return provider === 'webgpu' ? 'portable' : 'fused';
}

/** Creates a session on the requested device; `auto` tries cuda, then webgpu (only with a GPU present), then cpu. */
export async function createSession(model: ModelBytes, device: Device, opts: SessionOptions = {}): Promise<SessionHandle> {
  return createSessionFor(() => model, device, opts);
}

/**
 * Like createSession, for a graph that can be lowered either way: `build` is called with the kernels of
 * each provider tried (`opts.kernels` overrides), once per lowering.
 */
export async function createSessionFor(
  build: (kernels: Kernels) => ModelBytes,
  device: Device,
  opts: SessionOptions & { kernels?: Kernels } = {},
): Promise<SessionHandle> {
  const built = new Map<Kernels, ModelBytes>();
  const modelFor = (provider: SessionHandle['provider']): ModelBytes => {
    const k = opts.kernels ?? kernelsFor(provider);
    if (!built.has(k)) built.set(k, build(k));
    return built.get(k)!;
  };
  if (device === 'cpu') return createWith(modelFor('cpu'), 'cpu', opts);
  if (device === 'auto') {
    for (const provider of ['cuda', 'webgpu'] as const) {
      if (provider === 'cuda' && !cudaInstalled()) continue;
      if (provider === 'webgpu' && !gpuPresent()) continue;
      try {
        return await createWith(modelFor(provider), provider, opts);
      } catch {
        // fall through to the next provider; `auto` promises only that something runs
      }
    }
    return createWith(modelFor('cpu'), 'cpu', opts);
  }
  if (device === 'cuda' && !cudaInstalled()) {
    throw new NarrowtuneError('unavailable', `device cuda is not available: ${HOW_TO.cuda}`, [{ field: 'device', description: HOW_TO.cuda }]);
  }
  try {
    return await createWith(modelFor(device), device, opts);
  } catch (e) {
    const why = (e as Error).message.split('\n')[0].slice(0, 300);
    throw new NarrowtuneError('unavailable', `device ${device} could not start (${why}): ${HOW_TO[device]}`, [
      { field: 'device', description: HOW_TO[device] },
    ], { cause: e });
  }
}

/** Least-recently-used sessions keyed by what determines the graph; sessions hold frozen weights, so keep few. */
export class SessionCache {
  private entries = new Map<string, Promise<SessionHandle>>();

  constructor(private readonly capacity = 4) {}

  get(key: string, create: () => Promise<SessionHandle>): Promise<SessionHandle> {
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit;
    }
    const made = create();
    made.catch(() => this.entries.delete(key));
    this.entries.set(key, made);
    while (this.entries.size > this.capacity) {
      const [oldest, handle] = this.entries.entries().next().value as [string, Promise<SessionHandle>];
      this.entries.delete(oldest);
      void handle.then((h) => h.session.release()).catch(() => undefined);
    }
    return made;
  }
}

export type FloatArray = Float32Array | Float64Array;

export function floatTensor(data: FloatArray, dims: readonly number[]): ort.Tensor {
  return data instanceof Float64Array ? new ort.Tensor('float64', data, [...dims]) : new ort.Tensor('float32', data, [...dims]);
}

export function int64Tensor(data: BigInt64Array, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('int64', data, [...dims]);
}

