// Checkpoint tensors as the graph compilers take them: float32 values by Hugging Face name.
import type { Checkpoint } from '../model/checkpoint.js';
import { expectedTensors } from '../model/config.js';
import { viewFloat32, type StoredTensor } from '../model/safetensors.js';

/** A weight for the graph builders: frozen ones become initializers, trainable ones shape graph inputs. */
export interface ParamTensor {
  shape: number[];
  data: Float32Array;
}

/** Read-only: an aligned F32 tensor is viewed in place, not copied (a 0.5B model saves 1.9 GB). */
export function paramTensor(t: StoredTensor): ParamTensor {
  return { shape: t.shape, data: viewFloat32(t) };
}

/** Every tensor the decoder reads, by name; tensors outside the language model (a vision tower) are left out. */
export function paramsOf(ckpt: Pick<Checkpoint, 'config' | 'tensors'>): Map<string, ParamTensor> {
  return new Map([...expectedTensors(ckpt.config).keys()].map((n) => [n, paramTensor(ckpt.tensors.get(n)!)]));
}
