// Pillow's image resize (libImaging/Resample.c) for 8-bit RGB, reproduced bit for bit: Hugging Face's image
// processors and LLaVA's training code resize with PIL, so a tile the tower sees here is the tile it saw there.
//
// The algorithm: a separable convolution whose support widens with the downscale factor (antialiasing), the
// weights normalised in float64 then turned into 22-bit fixed point; the horizontal pass first, into an 8-bit
// intermediate (rounded and clipped), then the vertical pass. Pillow's reducing_gap is off (Hugging Face passes
// none), so there is no box pre-shrink.

/** A decoded image: rows of interleaved R, G, B bytes. */
export interface RgbImage {
  width: number;
  height: number;
  /** [height, width, 3] */
  data: Uint8Array;
}

export type Resample = 'bilinear' | 'bicubic';

/** Pillow's enum values as preprocessor_config.json's `resample` gives them. */
export const PIL_RESAMPLE: Readonly<Record<number, Resample>> = { 2: 'bilinear', 3: 'bicubic' };

interface Filter {
  support: number;
  weight(x: number): number;
}

// Keys's cubic with a = -0.5, as Pillow writes it (the operation order matters for bit equality).
const A = -0.5;
const FILTERS: Record<Resample, Filter> = {
  bilinear: {
    support: 1,
    weight: (x) => {
      if (x < 0) x = -x;
      return x < 1 ? 1 - x : 0;
    },
  },
  bicubic: {
    support: 2,
    weight: (x) => {
      if (x < 0) x = -x;
      if (x < 1) return ((A + 2) * x - (A + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * A;
      return 0;
    },
  },
};

// 32 bits less the 8 of a pixel and 2 of headroom for the negative lobes' overshoot.
const PRECISION_BITS = 32 - 8 - 2;
const HALF = 1 << (PRECISION_BITS - 1);

interface Coefficients {
  /** weights per output pixel (the widest window) */
  ksize: number;
  /** per output pixel: first input pixel, number of input pixels */
  bounds: Int32Array;
  /** [outSize, ksize] fixed-point weights */
  kk: Int32Array;
}

function coefficients(inSize: number, outSize: number, filter: Filter): Coefficients {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      k[x] = filter.weight((x + xmin - center + 0.5) * ss);
      ww += k[x];
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0 ? k[x] / ww : k[x];
      kk[xx * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * (1 << PRECISION_BITS)) : Math.trunc(0.5 + w * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

function clip8(sum: number): number {
  const v = sum >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** `image` resized to width × height exactly as Pillow's `Image.resize((width, height), resample)` does. */
export function resizeRgb(image: RgbImage, width: number, height: number, resample: Resample): RgbImage {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new Error(`resize to ${width}x${height}: the size must be positive integers`);
  }
  const filter = FILTERS[resample];
  let current = image;
  if (width !== image.width) {
    // Only the rows the vertical pass will read are resized horizontally.
    const vertical = coefficients(image.height, height, filter);
    const first = height !== image.height ? vertical.bounds[0] : 0;
    const last = height !== image.height ? vertical.bounds[height * 2 - 2] + vertical.bounds[height * 2 - 1] : image.height;
    current = horizontal(image, width, first, last, coefficients(image.width, width, filter));
    if (height !== image.height) return verticalPass(current, height, vertical, first);
    return current;
  }
  if (height !== image.height) return verticalPass(current, height, coefficients(image.height, height, filter), 0);
  return { width, height, data: image.data.slice() };
}

function horizontal(image: RgbImage, width: number, first: number, last: number, c: Coefficients): RgbImage {
  const rows = last - first;
  const out = new Uint8Array(rows * width * 3);
  const src = image.data;
  for (let y = 0; y < rows; y++) {
    const row = (y + first) * image.width * 3;
    for (let xx = 0; xx < width; xx++) {
      const xmin = c.bounds[xx * 2];
      const n = c.bounds[xx * 2 + 1];
      const kOff = xx * c.ksize;
      let r = HALF;
      let g = HALF;
      let b = HALF;
      for (let x = 0; x < n; x++) {
        const w = c.kk[kOff + x];
        const p = row + (x + xmin) * 3;
        r += src[p] * w;
        g += src[p + 1] * w;
        b += src[p + 2] * w;
      }
      const o = (y * width + xx) * 3;
      out[o] = clip8(r);
      out[o + 1] = clip8(g);
      out[o + 2] = clip8(b);
    }
  }
  return { width, height: rows, data: out };
}

/** `shift`: the input's first row is source row `shift` (the horizontal pass kept only the rows needed). */
function verticalPass(image: RgbImage, height: number, c: Coefficients, shift: number): RgbImage {
  const stride = image.width * 3;
  const out = new Uint8Array(height * stride);
  const src = image.data;
  // One output row at a time, adding whole input rows: the same sums as Pillow's, in an order that reads memory
  // sequentially (integer sums are exact in float64, so the order cannot change them).
  const acc = new Float64Array(stride);
  for (let yy = 0; yy < height; yy++) {
    const ymin = c.bounds[yy * 2] - shift;
    const n = c.bounds[yy * 2 + 1];
    acc.fill(HALF);
    for (let y = 0; y < n; y++) {
      const w = c.kk[yy * c.ksize + y];
      const row = (y + ymin) * stride;
      for (let i = 0; i < stride; i++) acc[i] += src[row + i] * w;
    }
    for (let i = 0; i < stride; i++) out[yy * stride + i] = clip8(acc[i]);
  }
  return { width: image.width, height, data: out };
}
