// What a token key can look like: generated keys are 64 characters [A-Za-z0-9]
// (SPEC §2); MASTER_TOKEN may choose 16 to 256. Anything else is refused before
// the store is asked (and counted by the brute-force guard, SPEC §4).
export const KEY_MIN_LENGTH = 16;
export const KEY_MAX_LENGTH = 256;
const KEY_SHAPE = /^[A-Za-z0-9]{16,256}$/;

export function isKeyShaped(key: string): boolean {
  return KEY_SHAPE.test(key);
}
