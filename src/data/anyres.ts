// Where an image goes: the tiles it is cut into for the vision tower (the single square tile of "pad",
// LLaVA-NeXT's anyres grid, LLaVA-OneVision's anyres_max_9) and how many positions it takes in the language
// model's sequence (image-features.ts fills them).
//
// The arithmetic follows Hugging Face's LlavaOnevision processor and model (select_best_resolution,
// get_patch_output_size, unpad_image with its round(·, 7), the anyres_max ratio), including Python's float floor
// division, so counts agree to the integer.

/** Candidate (height, width) resolutions in pixels, each a whole number of tiles (image_grid_pinpoints). */
export type Pinpoints = readonly (readonly [number, number])[];

/** How an image becomes tiles. */
export type Placement =
  | { kind: 'pad' }
  /** maxTiles: anyres_max_N's N (null: plain anyres, never downsampled) */
  | { kind: 'anyres'; pinpoints: Pinpoints; maxTiles: number | null };

/** The vision tower's geometry, from its config. */
export interface TileGeometry {
  /** side of the square tile the tower takes, in pixels (vision_config.image_size) */
  tileSize: number;
  /** side of a patch, in pixels (vision_config.patch_size) */
  patchSize: number;
  /** whether the checkpoint has image_newline (LLaVA-OneVision: one after each row, and one after a lone tile) */
  newline: boolean;
}

/** The tiles the tower runs on for one image, in order: for anyres the whole image first, then the grid by rows. */
export interface TilePlan {
  /** the decoded image's size */
  height: number;
  width: number;
  tiles: number;
  /** anyres only: the chosen pinpoint, the size the image is resized to within it, and where it is pasted */
  anyres?: {
    best: [height: number, width: number];
    resized: [height: number, width: number];
    offset: [top: number, left: number];
    grid: [rows: number, cols: number];
  };
}

/** A placement named as in LLaVA configs: pad, anyres, anyres_max_N. */
export function parsePlacement(name: string, pinpoints: Pinpoints | null): Placement {
  if (name === 'pad') return { kind: 'pad' };
  const max = /^anyres(?:_max_([1-9]\d*))?$/.exec(name);
  if (!max) throw new Error(`image placement ${JSON.stringify(name)} is not one of pad, anyres, anyres_max_N`);
  if (!pinpoints || pinpoints.length === 0) throw new Error(`image placement ${name} needs image_grid_pinpoints`);
  return { kind: 'anyres', pinpoints, maxTiles: max[1] ? Number(max[1]) : null };
}

/**
 * lmms-lab's range form of image_grid_pinpoints, "(1x1),...,(6x6)": every (i, j) from the first pair to the last,
 * times the tile size.
 */
export function expandPinpoints(range: string, tileSize: number): [number, number][] {
  const pairs = [...range.matchAll(/\((\d+)x(\d+)\)/g)].map((m) => [Number(m[1]), Number(m[2])]);
  if (pairs.length === 0) throw new Error(`image_grid_pinpoints ${JSON.stringify(range)} has no (AxB) pairs`);
  const [a0, b0] = pairs[0];
  const [a1, b1] = pairs[pairs.length - 1];
  const out: [number, number][] = [];
  for (let i = a0; i <= a1; i++) for (let j = b0; j <= b1; j++) out.push([i * tileSize, j * tileSize]);
  return out;
}

/**
 * The pinpoint (height, width) that keeps the most of the image's resolution after fitting it inside, and of
 * those the one that wastes the least area.
 */
export function selectBestResolution(height: number, width: number, pinpoints: Pinpoints): [number, number] {
  let best: [number, number] | null = null;
  let maxEffective = 0;
  let minWasted = Infinity;
  for (const [h, w] of pinpoints) {
    const scale = Math.min(w / width, h / height);
    const effective = Math.min(Math.trunc(width * scale) * Math.trunc(height * scale), width * height);
    const wasted = w * h - effective;
    if (effective > maxEffective || (effective === maxEffective && wasted < minWasted)) {
      maxEffective = effective;
      minWasted = wasted;
      best = [h, w];
    }
  }
  if (!best) throw new Error('image_grid_pinpoints is empty');
  return best;
}

/** The tiles for an image of height × width, each tileSize pixels square. */
export function planTiles(height: number, width: number, tileSize: number, placement: Placement): TilePlan {
  if (!(Number.isInteger(height) && Number.isInteger(width) && height > 0 && width > 0)) {
    throw new Error(`image size ${width}x${height}: must be positive integers`);
  }
  if (placement.kind === 'pad') return { height, width, tiles: 1 };
  const [bh, bw] = selectBestResolution(height, width, placement.pinpoints);
  if (bh % tileSize !== 0 || bw % tileSize !== 0) {
    throw new Error(`image_grid_pinpoints entry [${bh}, ${bw}] is not a multiple of the tile size ${tileSize}`);
  }
  // Fit inside the pinpoint, rounding the free side up, then centre (the odd pixel of padding goes after).
  const scaleW = bw / width;
  const scaleH = bh / height;
  const [rh, rw] = scaleW < scaleH ? [Math.min(Math.ceil(height * scaleW), bh), bw] : [bh, Math.min(Math.ceil(width * scaleH), bw)];
  const grid: [number, number] = [bh / tileSize, bw / tileSize];
  return {
    height,
    width,
    tiles: 1 + grid[0] * grid[1],
    anyres: { best: [bh, bw], resized: [rh, rw], offset: [Math.floor((bh - rh) / 2), Math.floor((bw - rw) / 2)], grid },
  };
}

/** Positions an image takes in the sequence, from its size alone (HF's processor _get_number_of_features). */
export function imageTokenCount(height: number, width: number, geometry: TileGeometry, placement: Placement): number {
  const plan = planTiles(height, width, geometry.tileSize, placement);
  const side = patchesPerSide(geometry);
  const base = side * side;
  if (!plan.anyres) return base + (geometry.newline ? 1 : 0);
  const [rows, cols] = packedGrid(plan, geometry, placement)!.packed;
  return base + rows * cols + (geometry.newline ? rows : 0);
}

/** Patches along a tile's side; a conv without padding drops the remainder (SigLIP: 384 px / 14 px = 27). */
export function patchesPerSide({ tileSize, patchSize }: TileGeometry): number {
  if (!(Number.isInteger(tileSize) && Number.isInteger(patchSize) && patchSize > 0 && patchSize <= tileSize)) {
    throw new Error(`tile size ${tileSize} and patch size ${patchSize} must be integers with 0 < patch <= tile`);
  }
  return Math.floor(tileSize / patchSize);
}

/**
 * The anyres feature map's shape: `unpadded` is the part of the grid that shows the image, `packed` what is left
 * after the anyres_max downsample (the rows and columns of positions, a newline after each row). null for pad.
 */
export function packedGrid(plan: TilePlan, geometry: TileGeometry, placement: Placement): { unpadded: [number, number]; packed: [number, number] } | null {
  if (!plan.anyres) return null;
  const side = patchesPerSide(geometry);
  const [rows, cols] = plan.anyres.grid;
  const [top, bottom, left, right] = unpadBounds(plan.height, plan.width, rows * side, cols * side);
  const unpadded: [number, number] = [bottom - top, right - left];
  const maxTiles = placement.kind === 'anyres' ? placement.maxTiles : null;
  const ratio = maxTiles === null ? 0 : Math.sqrt((unpadded[0] * unpadded[1]) / (maxTiles * side * side));
  const packed: [number, number] = ratio > 1.1 ? [pyFloorDiv(unpadded[0], ratio), pyFloorDiv(unpadded[1], ratio)] : unpadded;
  return { unpadded, packed };
}

/** unpad_image: the rows [top, bottom) and columns [left, right) of an H×W map that the image covers. */
export function unpadBounds(height: number, width: number, H: number, W: number): [number, number, number, number] {
  if (width / height > W / H) {
    const newHeight = roundTrunc7(height * (W / width));
    const pad = Math.floor((H - newHeight) / 2);
    return [pad, H - pad, 0, W];
  }
  const newWidth = roundTrunc7(width * (H / height));
  const pad = Math.floor((W - newWidth) / 2);
  return [0, H, pad, W - pad];
}

/** Python's int(round(x, 7)) for x >= 0: toFixed rounds the exact binary value, as round() does. */
function roundTrunc7(x: number): number {
  return Math.trunc(Number(x.toFixed(7)));
}

/** Python's float `a // b` (CPython float_floor_div): floor of the quotient computed via fmod, not of a / b. */
export function pyFloorDiv(a: number, b: number): number {
  const mod = a % b;
  let div = (a - mod) / b;
  if (mod !== 0 && b < 0 !== mod < 0) div -= 1;
  if (div === 0) return 0;
  let floor = Math.floor(div);
  if (div - floor > 0.5) floor += 1;
  return floor;
}
