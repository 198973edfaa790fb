/**
 * The trigger request's signature (DESIGN "Trigger request"): `v1=` + lowercase hex
 * HMAC-SHA256(key = UTF-8 secret, message = UTF-8 of `<timestamp>.<raw body>`). Web Crypto only,
 * so it runs in Convex's default runtime.
 */
export const TIMESTAMP_HEADER = "x-xata2convex-timestamp";
export const SIGNATURE_HEADER = "x-xata2convex-signature";

export async function computeSignature(secret: string, timestamp: string, body: string): Promise<string> {
  const encoder = new TextEncoder();
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = await crypto.subtle.sign("HMAC", key, encoder.encode(`${timestamp}.${body}`));
  return `v1=${toHex(mac)}`;
}

/** Lowercase hex, two digits a byte. */
export function toHex(bytes: ArrayBuffer | Uint8Array): string {
  return Array.from(new Uint8Array(bytes), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** The two signature headers for `body`, stamped with `nowMs` (unix seconds on the wire). */
export async function signatureHeaders(
  secret: string,
  body: string,
  nowMs: number = Date.now(),
): Promise<Record<string, string>> {
  const timestamp = String(Math.floor(nowMs / 1000));
  return {
    [TIMESTAMP_HEADER]: timestamp,
    [SIGNATURE_HEADER]: await computeSignature(secret, timestamp, body),
  };
}
