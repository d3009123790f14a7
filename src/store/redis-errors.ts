// What a failed Redis call means to the rest of the broker. Connection
// trouble of any kind becomes StoreUnavailableError (CONNACK 3, REST 503,
// SPEC §4, §5, §7); data that does not fit our layout becomes StoreDataError;
// a refusal by our own scripts becomes the error the caller would have got
// from the memory store.

import { TokenValidationError } from '../tokens/validate.js';
import { noClockError } from './token-record.js';
import { ChildRefusedError, StoreDataError, StoreUnavailableError } from './types.js';

/** Server replies that say "not now" rather than "never": the store is unavailable. */
const UNAVAILABLE_REPLY = /^(LOADING|READONLY|MASTERDOWN|BUSY|OOM|CLUSTERDOWN|TRYAGAIN|NOAUTH|NOPERM|WRONGPASS|MISCONF)\b/;
const CORRUPT_REPLY = /^TOKENMQ_CORRUPT (\S+) ([\s\S]*)$/;

/** Replies from the server, as opposed to errors raised on the client side (ioredis: `ReplyError`). */
export function isReplyError(err: unknown): boolean {
  return err instanceof Error && err.name === 'ReplyError';
}

/** Maps an error from an ioredis call. Errors of our own kinds pass through. */
export function mapRedisError(err: unknown): Error {
  if (err instanceof StoreUnavailableError || err instanceof StoreDataError || err instanceof TokenValidationError || err instanceof ChildRefusedError) return err;
  if (!(err instanceof Error)) return new StoreUnavailableError(`redis call failed: ${String(err)}`);
  if (!isReplyError(err)) {
    // Connection refused or lost, "Stream isn't writeable" (offline queue off),
    // MaxRetriesPerRequestError, "Command timed out", "Connection is closed".
    return new StoreUnavailableError(`token store unavailable: ${err.message}`, { cause: err });
  }
  const message = err.message;
  if (message.startsWith('TOKENMQ_INVALID')) return noClockError();
  const child = /^TOKENMQ_CHILD (limit|parent) ([\s\S]*)$/.exec(message);
  if (child) return new ChildRefusedError(child[2] as string, child[1] as 'limit' | 'parent');
  const corrupt = CORRUPT_REPLY.exec(message);
  if (corrupt) {
    const id = /^\d+$/.test(corrupt[1] as string) ? Number(corrupt[1]) : undefined;
    return new StoreDataError(corrupt[2] as string, id);
  }
  if (message.startsWith('TOKENMQ_CONFLICT ')) return new StoreDataError(message.slice('TOKENMQ_CONFLICT '.length));
  if (message.startsWith('WRONGTYPE')) {
    return new StoreDataError(`a key under the store's prefix holds the wrong type of value (${firstLine(message)})`);
  }
  if (UNAVAILABLE_REPLY.test(message)) return new StoreUnavailableError(`redis refused the command: ${firstLine(message)}`, { cause: err });
  // Anything else is a bug in a script or a call: let it surface as is.
  return err;
}

function firstLine(text: string): string {
  const end = text.indexOf('\n');
  return end === -1 ? text : text.slice(0, end);
}
