// What a token key can look like: generated keys are 64 characters [A-Za-z0-9]
// (SPEC §2); MASTER_TOKEN may choose 16 to 256. Anything else is refused before
// the store is asked (and counted by the brute-force guard, SPEC §4).
export const KEY_MIN_LENGTH = 16;
export const KEY_MAX_LENGTH = 256;

/** `^[A-Za-z0-9]{16,256}$`, as a loop: it runs at every CONNECT and REST call. */
export function isKeyShaped(key: string): boolean {
  if (key.length < KEY_MIN_LENGTH || key.length > KEY_MAX_LENGTH) return false;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (!((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a))) return false;
  }
  return true;
}
