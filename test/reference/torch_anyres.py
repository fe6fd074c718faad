"""Independent reference for src/data/image.ts and src/data/anyres.ts: LLaVA-OneVision's image preprocessing
with PIL and NumPy, the way Hugging Face's (PIL-based) LlavaOnevisionImageProcessor does it, and the packing of
vision features with PyTorch in float64, the way LlavaOnevisionModel.pack_image_features does it.

usage: torch_anyres.py SPEC.json OUT_DIR
SPEC: {"pixels": [case...], "features": [case...], "counts": [case...]}; each case's results go to OUT_DIR as
<name>.f32 / <name>.f64 (raw little-endian) and counts.json.
"""
import json
import math
import sys

import numpy as np
import torch
from PIL import Image

RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def select_best_resolution(original_size, possible_resolutions):
    original_height, original_width = original_size
    best_fit = None
    max_effective_resolution = 0
    min_wasted_resolution = float("inf")
    for height, width in possible_resolutions:
        scale = min(width / original_width, height / original_height)
        downscaled_width, downscaled_height = int(original_width * scale), int(original_height * scale)
        effective_resolution = min(downscaled_width * downscaled_height, original_width * original_height)
        wasted_resolution = (width * height) - effective_resolution
        if effective_resolution > max_effective_resolution or (
            effective_resolution == max_effective_resolution and wasted_resolution < min_wasted_resolution
        ):
            max_effective_resolution = effective_resolution
            min_wasted_resolution = wasted_resolution
            best_fit = (height, width)
    return best_fit


def convert_to_rgb(image, alpha):
    """transformers.image_transforms.convert_to_rgb (white), or PIL's convert('RGB') (drop)."""
    if image.mode == "RGB":
        return image
    if alpha == "drop":
        return image.convert("RGB")
    image_rgba = image.convert("RGBA")
    background = Image.new("RGBA", image_rgba.size, (255, 255, 255))
    return Image.alpha_composite(background, image_rgba).convert("RGB")


def resize(array, height, width, resample):
    """transformers.image_transforms.resize of a uint8 HWC array: through PIL, no reducing gap."""
    return np.array(Image.fromarray(array).resize((width, height), resample=resample, reducing_gap=None))


def patch_output_size(height, width, target):
    target_height, target_width = target
    scale_w = target_width / width
    scale_h = target_height / height
    if scale_w < scale_h:
        return min(math.ceil(height * scale_w), target_height), target_width
    return target_height, min(math.ceil(width * scale_h), target_width)


def pad_to_square(array, colour):
    height, width = array.shape[:2]
    if height == width:
        return array
    side = max(height, width)
    out = np.empty((side, side, 3), dtype=np.uint8)
    out[:, :] = colour
    if width > height:
        start = (side - height) // 2
        out[start : start + height, :] = array
    else:
        start = (side - width) // 2
        out[:, start : start + width] = array
    return out


def normalize(tile, case):
    """rescale (float64 product stored as float32), then (x - mean) / std in float32; HWC -> CHW."""
    x = (tile.astype(np.float64) * case["rescale"]).astype(np.float32)
    x = (x - np.array(case["mean"], dtype=np.float32)) / np.array(case["std"], dtype=np.float32)
    return x.transpose(2, 0, 1)


def pixels(case):
    image = convert_to_rgb(Image.open(case["file"]), case["alpha"])
    array = np.array(image)
    size = case["size"]
    resample = RESAMPLE[case["resample"]]
    if case["placement"] == "pad":
        tiles = [resize(pad_to_square(array, case["pad_colour"]), size, size, resample)]
    else:
        height, width = array.shape[:2]
        best = select_best_resolution((height, width), case["pinpoints"])
        new_height, new_width = patch_output_size(height, width, best)
        resized = resize(array, new_height, new_width, resample)
        paste_x, r_x = divmod(best[1] - new_width, 2)
        paste_y, r_y = divmod(best[0] - new_height, 2)
        padded = np.pad(resized, ((paste_y, paste_y + r_y), (paste_x, paste_x + r_x), (0, 0)), constant_values=0)
        patches = [padded[i : i + size, j : j + size] for i in range(0, best[0], size) for j in range(0, best[1], size)]
        tiles = [resize(array, size, size, resample)] + patches
    return np.stack([normalize(t, case) for t in tiles]).astype(np.float32)


def unpad_image(tensor, original_size):
    original_height, original_width = original_size
    current_height, current_width = tensor.shape[1:]
    original_aspect_ratio = original_width / original_height
    current_aspect_ratio = current_width / current_height
    if original_aspect_ratio > current_aspect_ratio:
        scale_factor = current_width / original_width
        new_height = int(round(original_height * scale_factor, 7))
        padding = (current_height - new_height) // 2
        return tensor[:, padding : current_height - padding, :]
    scale_factor = current_height / original_height
    new_width = int(round(original_width * scale_factor, 7))
    padding = (current_width - new_width) // 2
    return tensor[:, :, padding : current_width - padding]


def pack(case, features, newline):
    """pack_image_features for one image; features: [tiles, side*side, hidden] float64."""
    side = case["tile_size"] // case["patch_size"]
    base = features[0]
    if case["placement"] == "pad":
        out = base
        if newline is not None:
            out = torch.cat((out, newline[None]), dim=0)
        return out
    best = select_best_resolution((case["height"], case["width"]), case["pinpoints"])
    rows, cols = best[0] // case["tile_size"], best[1] // case["tile_size"]
    f = features[1:].view(rows, cols, side, side, -1)
    f = f.permute(4, 0, 2, 1, 3).contiguous().flatten(1, 2).flatten(2, 3)
    f = unpad_image(f, (case["height"], case["width"]))
    if case["max_tiles"] is not None:
        channels, curr_height, curr_width = f.shape
        ratio = math.sqrt(curr_height * curr_width / (case["max_tiles"] * side**2))
        if ratio > 1.1:
            f = torch.nn.functional.interpolate(f[None], [int(curr_height // ratio), int(curr_width // ratio)], mode="bilinear")[0]
    if newline is not None:
        f = torch.cat((f, newline[:, None, None].expand(*f.shape[:-1], 1)), dim=-1)
    f = f.flatten(1, 2).transpose(0, 1)
    return torch.cat((base, f), dim=0)


def count(case):
    """LlavaOnevisionProcessor._get_number_of_features (plus one for a lone tile's newline)."""
    side = case["tile_size"] // case["patch_size"]
    if case["placement"] == "pad":
        return side * side + (1 if case["newline"] else 0)
    best_height, best_width = select_best_resolution([case["height"], case["width"]], case["pinpoints"])
    current_height = side * (best_height // case["tile_size"])
    current_width = side * (best_width // case["tile_size"])
    height, width = case["height"], case["width"]
    if width / height > current_width / current_height:
        new_height = int(round(height * (current_width / width), 7))
        current_height -= ((current_height - new_height) // 2) * 2
    else:
        new_width = int(round(width * (current_height / height), 7))
        current_width -= ((current_width - new_width) // 2) * 2
    unpadded = current_height * current_width
    newlines = current_height
    if case["max_tiles"] is not None:
        ratio = math.sqrt(current_height * current_width / (case["max_tiles"] * side**2))
        if ratio > 1.1:
            unpadded = int(current_height // ratio) * int(current_width // ratio)
            newlines = int(current_height // ratio)
    return side * side + unpadded + (newlines if case["newline"] else 0)


def main():
    spec = json.load(open(sys.argv[1]))
    out = sys.argv[2]
    for case in spec.get("pixels", []):
        pixels(case).astype("<f4").tofile(f"{out}/{case['name']}.f32")
    for case in spec.get("features", []):
        features = torch.from_numpy(np.fromfile(case["features"], dtype="<f8")).view(case["tiles"], -1, case["hidden"])
        newline = torch.from_numpy(np.fromfile(case["newline"], dtype="<f8")) if case["newline"] else None
        pack(case, features, newline).numpy().astype("<f8").tofile(f"{out}/{case['name']}.f64")
    json.dump([count(c) for c in spec.get("counts", [])], open(f"{out}/counts.json", "w"))


if __name__ == "__main__":
    main()
