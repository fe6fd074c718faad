// The image's positions in the language model's sequence, from the vision tower's per-tile features: LLaVA-NeXT
// and LLaVA-OneVision's packing (pack_image_features: unpad, the anyres_max bilinear downsample as PyTorch's
// F.interpolate with align_corners=False computes it, image_newline per row, the whole-image tile first), on the
// host, in float64 whatever the storage.

import { imageTokenCount, packedGrid, patchesPerSide, unpadBounds, type Placement, type TileGeometry, type TilePlan } from './anyres.js';

/**
 * The image's positions from the tower's features, as the model packs them: `features` is [tiles, side², hidden]
 * in the plan's tile order; the result is [imageTokenCount, hidden]. For anyres the grid tiles are joined into one
 * feature map, cut back to the image's aspect ratio (unpad), downsampled bilinearly when it holds more than
 * maxTiles tiles' worth by over 1.1× (anyres_max), given `newline` at the end of each row, and preceded by the
 * whole-image tile. A lone tile gets one `newline` after it when the checkpoint has one.
 */
export function assembleImageFeatures<T extends Float32Array | Float64Array>(
  features: T,
  hidden: number,
  plan: TilePlan,
  geometry: TileGeometry,
  placement: Placement,
  newline: T | null,
): T {
  const side = patchesPerSide(geometry);
  const perTile = side * side * hidden;
  if (features.length !== plan.tiles * perTile) {
    throw new Error(`vision features hold ${features.length} values; ${plan.tiles} tiles of ${side}x${side} patches x ${hidden} need ${plan.tiles * perTile}`);
  }
  if (geometry.newline !== (newline !== null)) throw new Error(`image_newline is ${newline ? 'given' : 'missing'} but geometry.newline is ${geometry.newline}`);
  if (newline && newline.length !== hidden) throw new Error(`image_newline has ${newline.length} values, expected ${hidden}`);
  const make = (n: number) => new (features.constructor as new (n: number) => T)(n);
  const total = imageTokenCount(plan.height, plan.width, geometry, placement);
  const out = make(total * hidden);
  out.set(features.subarray(0, perTile));
  if (!plan.anyres) {
    if (newline) out.set(newline, perTile);
    return out;
  }

  // The grid tiles as one [H, W, hidden] map, then the part that shows the image (not the padding).
  const [rows, cols] = plan.anyres.grid;
  const H = rows * side;
  const W = cols * side;
  const [top, bottom, left, right] = unpadBounds(plan.height, plan.width, H, W);
  const h = bottom - top;
  const w = right - left;
  let map = make(h * w * hidden);
  for (let y = 0; y < h; y++) {
    const gy = y + top;
    for (let x = 0; x < w; x++) {
      const gx = x + left;
      const tile = 1 + Math.floor(gy / side) * cols + Math.floor(gx / side);
      const patch = (gy % side) * side + (gx % side);
      const src = tile * perTile + patch * hidden;
      map.set(features.subarray(src, src + hidden), (y * w + x) * hidden);
    }
  }
  const [oh, ow] = packedGrid(plan, geometry, placement)!.packed;
  if (oh !== h || ow !== w) map = bilinear(map, h, w, oh, ow, hidden, make);

  let o = perTile;
  for (let y = 0; y < oh; y++) {
    out.set(map.subarray(y * ow * hidden, (y + 1) * ow * hidden), o);
    o += ow * hidden;
    if (newline) {
      out.set(newline, o);
      o += hidden;
    }
  }
  return out;
}

/** F.interpolate(mode='bilinear', align_corners=False) of an [h, w, hidden] map, as PyTorch's CPU kernel computes it. */
function bilinear<T extends Float32Array | Float64Array>(
  src: T,
  h: number,
  w: number,
  oh: number,
  ow: number,
  hidden: number,
  make: (n: number) => T,
): T {
  const ys = linearTaps(h, oh);
  const xs = linearTaps(w, ow);
  const out = make(oh * ow * hidden);
  for (let y = 0; y < oh; y++) {
    const r0 = ys.i0[y] * w;
    const r1 = ys.i1[y] * w;
    const [hy0, hy1] = [ys.l0[y], ys.l1[y]];
    for (let x = 0; x < ow; x++) {
      const [c0, c1, wx0, wx1] = [xs.i0[x], xs.i1[x], xs.l0[x], xs.l1[x]];
      const p00 = (r0 + c0) * hidden;
      const p01 = (r0 + c1) * hidden;
      const p10 = (r1 + c0) * hidden;
      const p11 = (r1 + c1) * hidden;
      const o = (y * ow + x) * hidden;
      for (let c = 0; c < hidden; c++) {
        const t0 = src[p00 + c] * wx0 + src[p01 + c] * wx1;
        const t1 = src[p10 + c] * wx0 + src[p11 + c] * wx1;
        out[o + c] = t0 * hy0 + t1 * hy1;
      }
    }
  }
  return out;
}

/** Source indices and weights along one axis (compute_indices_weights_linear, align_corners=False). */
function linearTaps(inSize: number, outSize: number) {
  const scale = inSize / outSize;
  const i0 = new Int32Array(outSize);
  const i1 = new Int32Array(outSize);
  const l0 = new Float64Array(outSize);
  const l1 = new Float64Array(outSize);
  for (let d = 0; d < outSize; d++) {
    // PyTorch's CPU (FMA) and CUDA builds compute scale * (d + 0.5) - 0.5 as one fused multiply-add; its last
    // bit is the weight's, so it is rounded once here too.
    const real = Math.max(fusedMultiplyAdd(scale, d + 0.5, -0.5), 0);
    i0[d] = Math.trunc(real);
    const lambda = Math.min(Math.max(real - i0[d], 0), 1);
    l0[d] = 1 - lambda;
    l1[d] = lambda;
    i1[d] = i0[d] + (i0[d] < inSize - 1 ? 1 : 0);
  }
  return { i0, i1, l0, l1 };
}

/**
 * a * b + c rounded once (exact BigInt arithmetic), for the moderate finite values it is given here: the product
 * and the result normal numbers, and the terms' magnitudes less than 2^900 apart.
 */
export function fusedMultiplyAdd(a: number, b: number, c: number): number {
  const [ma, ea] = binary(a);
  const [mb, eb] = binary(b);
  const [mc, ec] = binary(c);
  const ep = ea + eb;
  const e = ma * mb === 0n ? ec : mc === 0n ? ep : Math.min(ep, ec);
  const sum = (ma * mb === 0n ? 0n : (ma * mb) << BigInt(ep - e)) + (mc === 0n ? 0n : mc << BigInt(ec - e));
  // Number() of a BigInt rounds to nearest, ties to even; the power of two then scales exactly.
  return Number(sum) * 2 ** e;
}

/** x as an integer mantissa and a power of two: x = m · 2^e. */
function binary(x: number): [bigint, number] {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  const exponent = Number((bits >> 52n) & 0x7ffn);
  const fraction = bits & ((1n << 52n) - 1n);
  const m = exponent === 0 ? fraction : fraction | (1n << 52n);
  return [bits >> 63n ? -m : m, (exponent === 0 ? 1 : exponent) - 1075];
}
