// Photos the workers cannot read, turned into ones they can before upload.

import { ApiError } from "./api";

/** Whether a file is an HEIC/HEIF photo (iPhones take them), by type or name. */
function isHeic(file: File): boolean {
  return /^image\/hei[cf]/.test(file.type) || /\.(heic|heif)$/i.test(file.name);
}

/**
 * The file as rma can read it. HEIC photos are turned into JPEG here when this browser can
 * open them (Safari can); rma's workers do not read HEIC.
 */
export async function readable(file: File): Promise<Blob> {
  if (!isHeic(file)) return file;
  try {
    const bitmap = await createImageBitmap(file);
    const canvas = document.createElement("canvas");
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    canvas.getContext("2d")!.drawImage(bitmap, 0, 0);
    const jpeg = await new Promise<Blob | null>((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
    if (jpeg) return jpeg;
  } catch {
    /* this browser cannot open HEIC: say so below */
  }
  throw new ApiError(
    "unsupported_media_type",
    "This browser can't open HEIC photos. Take the photo again as JPEG (on an iPhone: Settings › Camera › Formats › Most Compatible) or upload it from Safari.",
    415,
  );
}
