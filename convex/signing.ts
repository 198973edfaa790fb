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
  const hex = Array.from(new Uint8Array(mac), (byte) => byte.toString(16).padStart(2, "0")).join("");
  return `v1=${hex}`;
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
