// A PEFT adapter directory as a request's model: its base model is opened too, so it must lie inside the model
// roots like the adapter itself (no reading a model outside the roots through base_model_name_or_path).
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EvaluateRequest } from '../../src/gen/narrowtune/v1/tuning_service.js';
import { adapterConfigJson } from '../../src/model/peft-adapter.js';
import { writeSafetensorsFile } from '../../src/model/safetensors-file.js';
import { fromFloat32 } from '../../src/model/safetensors.js';
import { parseEvaluate } from '../../src/service/evaluate-request.js';
import { realRoots } from '../../src/service/paths.js';
import type { RequestContext } from '../../src/service/requests.js';
import { NarrowtuneError } from '../../src/util/errors.js';
import { repeatData, tempDir, tinyModel } from '../trainer/fixtures.js';

let outside: string;
let root: string;
let ctx: RequestContext;
beforeAll(async () => {
  outside = realRoots([await tempDir('nt-lora-roots-')])[0];
  root = join(outside, 'root');
  await tinyModel(outside, undefined, 'elsewhere');
  await tinyModel(root, undefined, 'base');
  await repeatData(root);
  ctx = { store: { getJob: async () => null }, modelRoots: [root], dataRoots: [root], checkpointEvery: 10 };
});
afterAll(() => rm(outside, { recursive: true, force: true }));

async function adapter(name: string, base: string): Promise<string> {
  const d = join(root, name);
  await mkdir(d, { recursive: true });
  await writeFile(join(d, 'adapter_config.json'), JSON.stringify(adapterConfigJson({ rank: 1, alpha: 1, dropout: 0, targetModules: ['q_proj'], base })));
  const t = (ab: string, shape: number[]) => ({ name: `base_model.model.model.layers.0.self_attn.q_proj.lora_${ab}.weight`, dtype: 'F32' as const, shape, data: fromFloat32(new Float32Array(32), 'F32') });
  await writeSafetensorsFile(join(d, 'adapter_model.safetensors'), [t('A', [1, 32]), t('B', [32, 1])]);
  return d;
}

const request = (model: string) =>
  EvaluateRequest.fromPartial({ model: { source: { $case: 'path', value: model } }, datasets: [{ name: 'd', path: 'train.jsonl', kind: 1 }] });

describe('an adapter as a request’s model', () => {
  it('is accepted with its base inside the model roots', async () => {
    const cmd = await parseEvaluate(request(await adapter('inside', '../base')), ctx);
    expect(cmd.model).toBe(join(root, 'inside'));
  });

  it('is refused when its base lies outside them', async () => {
    const e = await parseEvaluate(request(await adapter('escapes', '../../elsewhere')), ctx).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NarrowtuneError);
    expect((e as NarrowtuneError).violations).toEqual([{ field: 'model.path', description: expect.stringMatching(/is outside the allowed model roots$/) }]);
  });
});
