// Checkpoint tensors as the graph compilers take them: float32 values by Hugging Face name.
import type { Checkpoint } from '../model/checkpoint.js';
import { expectedTensors } from '../model/config.js';
import { toFloat32, viewFloat32, type StoredTensor } from '../model/safetensors.js';
import type { HalfDType } from './graph-builder.js';

/** A weight for the graph builders: frozen ones become initializers, trainable ones shape graph inputs. */
export interface ParamTensor {
  shape: number[];
  data: Float32Array;
  /** The checkpoint's own half-precision bytes (BF16, F16): a frozen weight may be stored as these in the graph. */
  half?: { dtype: HalfDType; bytes: Uint8Array };
}

/**
 * Read-only: an aligned F32 tensor is viewed in place, not copied (a 0.5B model saves 1.9 GB). A half-precision
 * tensor is decoded to float32 only when something reads `data`, so one the graph stores as half never is.
 */
export function paramTensor(t: StoredTensor): ParamTensor {
  if (t.dtype !== 'BF16' && t.dtype !== 'F16') return { shape: t.shape, data: viewFloat32(t) };
  let data: Float32Array | null = null;
  return {
    shape: t.shape,
    half: { dtype: t.dtype === 'BF16' ? 'bfloat16' : 'float16', bytes: t.data },
    get data() {
      data ??= toFloat32(t);
      return data;
    },
  };
}

/** Every tensor the decoder reads, by name; tensors outside the language model (a vision tower) are left out. */
export function paramsOf(ckpt: Pick<Checkpoint, 'config' | 'tensors'>): Map<string, ParamTensor> {
  return new Map([...expectedTensors(ckpt.config).keys()].map((n) => [n, paramTensor(ckpt.tensors.get(n)!)]));
}
