/**
 * Small formatting helpers shared by the panel sections and the status bar.
 */

/** 1536 -> "1.5 KiB"; null -> "?" */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !isFinite(bytes)) {
    return '?';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${value.toFixed(digits)} ${units[unit]}`;
}

/** "sha256:0123456789abcdef..." -> "0123456789ab" (docker's short form). */
export function shortId(id: string | null | undefined): string {
  if (!id) {
    return '';
  }
  const bare = id.includes(':') ? id.slice(id.indexOf(':') + 1) : id;
  return bare.slice(0, 12);
}

/** 0.4234 -> "42%" */
export function percent(fraction: number | null | undefined): string {
  if (fraction === null || fraction === undefined || !isFinite(fraction)) {
    return '?';
  }
  return `${Math.round(fraction * 100)}%`;
}

/** Clamp a ratio to 0..1, null when it cannot be computed. */
export function ratio(
  part: number | null | undefined,
  whole: number | null | undefined
): number | null {
  if (
    part === null ||
    part === undefined ||
    whole === null ||
    whole === undefined ||
    !(whole > 0)
  ) {
    return null;
  }
  return Math.min(1, Math.max(0, part / whole));
}

/** The best human name for an image: its first tag, else its short id. */
export function imageName(image: { id: string; tags: string[] }): string {
  return image.tags.length > 0 ? image.tags[0] : shortId(image.id);
}

/** The reference to hand to the server for an image: first tag, else full id. */
export function imageRef(image: { id: string; tags: string[] }): string {
  return image.tags.length > 0 ? image.tags[0] : image.id;
}

/** Message of an error thrown by requestAPI or anything else. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) {
    return error.message;
  }
  return String(error);
}

/** HTTP status of a ServerConnection.ResponseError, if any. */
export function errorStatus(error: unknown): number | undefined {
  const response = (error as { response?: Response } | null)?.response;
  return response ? response.status : undefined;
}

/**
 * An image's creation date as YYYY-MM-DD. Accepts an ISO string or Unix
 * seconds (the engine's own form); '' when unknown.
 */
export function formatDate(
  created: string | number | null | undefined
): string {
  if (created === null || created === undefined || created === '') {
    return '';
  }
  const date =
    typeof created === 'number' ? new Date(created * 1000) : new Date(created);
  if (isNaN(date.getTime())) {
    return String(created).slice(0, 10);
  }
  return date.toISOString().slice(0, 10);
}

/**
 * Text from a notebook someone sent (a Dockerfile, file names) as it really is: each control
 * or invisible character (bidirectional overrides reorder what a line shows; a carriage return
 * starts a line that Docker does not see) written as a visible escape, as the CLI shows it.
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, ch => {
    const code = ch.charCodeAt(0);
    return code <= 0xff
      ? `\\x${code.toString(16).padStart(2, '0')}`
      : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

const UNPRINTABLE =
  // eslint-disable-next-line no-control-regex
  /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/g;
