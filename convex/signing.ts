/**
 * The signature of the trigger request and of the sink request: `v1=` +
 * lowercase hex HMAC-SHA256(key = UTF-8 secret, message = `<timestamp>.` + the raw body bytes).
 * Web Crypto only, so it runs in Convex's default runtime.
 */
export const TIMESTAMP_HEADER = "x-xata2convex-timestamp";
export const SIGNATURE_HEADER = "x-xata2convex-signature";
/** A signature older or newer than this (either way) is refused: it bounds what a replay can do. */
export const MAX_SKEW_SECONDS = 300;
const SIGNATURE = /^v1=([0-9a-f]{64})$/;
const TIMESTAMP = /^\d{1,12}$/;

const encoder = new TextEncoder();

async function hmacKey(secret: string, usage: "sign" | "verify"): Promise<CryptoKey> {
  return await crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    [usage],
  );
}

function signedMessage(timestamp: string, body: string | Uint8Array): Uint8Array<ArrayBuffer> {
  const bytes = typeof body === "string" ? encoder.encode(body) : body;
  const prefix = encoder.encode(`${timestamp}.`);
  const message = new Uint8Array(prefix.length + bytes.length);
  message.set(prefix);
  message.set(bytes, prefix.length);
  return message;
}

export async function computeSignature(secret: string, timestamp: string, body: string): Promise<string> {
  const mac = await crypto.subtle.sign("HMAC", await hmacKey(secret, "sign"), signedMessage(timestamp, body));
  return `v1=${toHex(mac)}`;
}

/** Lowercase hex, two digits a byte. */
export function toHex(bytes: ArrayBuffer | Uint8Array): string {
  return Array.from(new Uint8Array(bytes), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function fromHex(hex: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(hex.match(/../g) ?? [], (pair) => Number.parseInt(pair, 16));
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

/**
 * Why a request is not validly signed, or null when it is: its timestamp is within MAX_SKEW_SECONDS
 * of `nowMs` and one of its comma-separated signatures is the HMAC of exactly `body` under one of
 * `secrets` (two during a rotation). `crypto.subtle.verify` compares in constant time. The reason
 * names headers only, never a secret or an expected value.
 */
export async function signatureProblem(
  secrets: string[],
  headers: Headers,
  body: Uint8Array,
  nowMs: number = Date.now(),
): Promise<string | null> {
  const timestamp = headers.get(TIMESTAMP_HEADER);
  const signature = headers.get(SIGNATURE_HEADER);
  if (!timestamp) return `missing ${TIMESTAMP_HEADER} header`;
  if (!signature) return `missing ${SIGNATURE_HEADER} header`;
  if (!TIMESTAMP.test(timestamp)) return `${TIMESTAMP_HEADER} must be unix seconds`;
  if (Math.abs(nowMs / 1000 - Number(timestamp)) > MAX_SKEW_SECONDS) {
    return `${TIMESTAMP_HEADER} is more than ${MAX_SKEW_SECONDS} s away from the server's clock`;
  }
  const offered = signature
    .split(",")
    .map((candidate) => SIGNATURE.exec(candidate.trim())?.[1])
    .filter((hex): hex is string => hex !== undefined)
    .map(fromHex);
  const message = signedMessage(timestamp, body);
  for (const secret of secrets) {
    const key = await hmacKey(secret, "verify");
    for (const mac of offered) {
      if (await crypto.subtle.verify("HMAC", key, mac, message)) return null;
    }
  }
  return "signature does not match";
}

/** `text` with every secret replaced, for anything that may reach a log or an answer. */
export function redact(text: string, secrets: string[]): string {
  return secrets.reduce(
    (redacted, secret) => (secret ? redacted.split(secret).join("[redacted]") : redacted),
    text,
  );
}
