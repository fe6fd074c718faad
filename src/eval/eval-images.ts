// Images in evaluation sets for a LLaVA-style model, written as the trainer's image-text files write them
// (data/image-text.ts): an `image` (a path or a list) or `images` field, one `<image>` marker per image where it
// goes, paths relative to the data file and inside its directory or the given roots. Each marker becomes the
// image's positions in the token sequence (LLaVA's tokenizer_image_token: the text between markers is encoded
// piece by piece), filled with the image's features when the set is scored or generated from.
import type { ExampleImage } from '../data/dataset.js';
import { IMAGE_MARKER, imageList, imageResolver, type ImageRef } from '../data/image-text.js';
import type { TextTokenizer } from '../data/tokenizer.js';

export interface EvalImageOptions {
  /** The id image positions hold (the checkpoint's image_token_index, or the pad id where it has none). */
  imageTokenId: number;
  /** Positions an image takes in the sequence (from its stored size). */
  tokensFor(image: ImageRef): number;
  /** Directories images may also lie in besides the data file's own (the service's data roots). */
  roots?: readonly string[];
}

type Fail = (problem: string) => never;

/** A set's distinct images (by resolved path) in first-use order, with the data file line that first uses each. */
export class SetImages {
  readonly images: ImageRef[] = [];
  readonly imageLines: number[] = [];
  private readonly index = new Map<string, number>();

  /** Starts from an image list already indexed elsewhere (an ImageDataset's), so both index the same way. */
  static of(images: readonly ImageRef[], lines: readonly number[]): SetImages {
    const s = new SetImages();
    images.forEach((ref, i) => s.add(ref, lines[i]));
    return s;
  }

  add(ref: ImageRef, line: number): number {
    let i = this.index.get(ref.path);
    if (i === undefined) {
      i = this.images.push(ref) - 1;
      this.imageLines.push(line);
      this.index.set(ref.path, i);
    }
    return i;
  }
}

/** Reads and resolves a line's `image` / `images` field ([] when it has none). */
export type LineImages = (record: Record<string, unknown>, fail: Fail) => Promise<ImageRef[]>;

/** A reader of `file`'s image fields; with `o` null (a text-only model) any image fails the line. */
export async function lineImages(file: string, o: EvalImageOptions | null): Promise<LineImages> {
  const resolve = o ? await imageResolver(file, o.roots) : null;
  return async (record, fail) => {
    if ('image' in record && 'images' in record) fail('has both "image" and "images"; give one list of images');
    const given = 'images' in record ? imageList(record.images, 'images', false, fail) : imageList(record.image, 'image', true, fail);
    if (given.length === 0) return [];
    if (!resolve) fail(`names ${given.length === 1 ? 'an image' : 'images'} (${given.join(', ')}), but the model is text-only (it has no vision tower)`);
    const refs: ImageRef[] = [];
    for (const g of given) refs.push(await resolve!(g, fail));
    return refs;
  };
}

/** For a LLaVA-style model: as many `<image>` markers in `texts` as the line has images. */
export function checkMarkers(texts: readonly string[], images: readonly ImageRef[], fail: Fail): void {
  const markers = texts.reduce((n, t) => n + t.split(IMAGE_MARKER).length - 1, 0);
  if (markers !== images.length) {
    fail(`${markers} ${IMAGE_MARKER} marker${markers === 1 ? '' : 's'} but ${images.length} image${images.length === 1 ? '' : 's'}; each image needs one marker where it goes`);
  }
}

/** A token sequence built piece by piece, each `<image>` marker taking the next image's positions. */
export class ImageSequence {
  readonly ids: number[] = [];
  readonly images: ExampleImage[] = [];
  private used = 0;

  /** `refs` null: markers are plain text (a text-only model). */
  constructor(
    private readonly tokenizer: TextTokenizer,
    private readonly o: EvalImageOptions | null,
    private readonly set: SetImages,
    private readonly line: number,
    private readonly refs: readonly ImageRef[] | null,
    private readonly fail: Fail,
  ) {}

  /**
   * Appends `text`. `leading` (the post-processor's leading specials) go in front of it: always, or with
   * `unlessPresent` only when the text's first piece does not already start with them (a chat template's BOS).
   */
  append(text: string, leading: readonly number[] = [], unlessPresent = false): void {
    const pieces = this.refs && this.refs.length > 0 ? text.split(IMAGE_MARKER) : [text];
    pieces.forEach((piece, j) => {
      if (j > 0) this.image();
      let ids = piece === '' ? [] : this.tokenizer.encode(piece, { addSpecialTokens: false });
      if (j === 0 && leading.length > 0 && !(unlessPresent && leading.every((id, i) => ids[i] === id))) ids = [...leading, ...ids];
      this.ids.push(...ids);
    });
  }

  /** Every image of the line placed (markers in text that was not appended would leave some out). */
  get complete(): boolean {
    return this.used === (this.refs?.length ?? 0);
  }

  private image(): void {
    const ref = this.refs![this.used];
    if (ref === undefined) this.fail(`more ${IMAGE_MARKER} markers than images`);
    this.used++;
    const count = this.o!.tokensFor(ref);
    this.images.push({ start: this.ids.length, count, image: this.set.add(ref, this.line) });
    for (let i = 0; i < count; i++) this.ids.push(this.o!.imageTokenId);
  }
}
