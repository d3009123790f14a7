// Why the gate refused a key (SPEC §4, §5), and what each protocol answers for
// it: one row per cause in each table, so MQTT and REST cannot drift apart.
// The cause names are also the label values of tokenmq_connects_total.

/** Every refusal cause the gate (and the checks plugged into it) can give. */
export const REFUSAL_CAUSES = [
  'bad_key', 'expired', 'disabled', 'ip_denied', 'no_mqtt_rights', 'will_denied',
  'store_unavailable', 'rate_limited', 'client_id_rejected', 'token_unreadable', 'session_limit',
] as const;
export type RefusalCause = (typeof REFUSAL_CAUSES)[number];

/** MQTT 3.1.1 CONNACK return codes used by tokenmq (SPEC §4). */
export const CONNACK = {
  IDENTIFIER_REJECTED: 2,
  SERVER_UNAVAILABLE: 3,
  BAD_CREDENTIALS: 4,
  NOT_AUTHORIZED: 5,
} as const;

/**
 * SPEC §4 CONNACK codes: 4 unknown/malformed/expired; 5 disabled, IP, no MQTT rights,
 * will, limits, unreadable, and the brute-force guard; 2 client id; 3 store down.
 */
export const CONNACK_BY_CAUSE: Readonly<Record<RefusalCause, number>> = {
  bad_key: CONNACK.BAD_CREDENTIALS,
  expired: CONNACK.BAD_CREDENTIALS,
  disabled: CONNACK.NOT_AUTHORIZED,
  ip_denied: CONNACK.NOT_AUTHORIZED,
  no_mqtt_rights: CONNACK.NOT_AUTHORIZED,
  will_denied: CONNACK.NOT_AUTHORIZED,
  token_unreadable: CONNACK.NOT_AUTHORIZED,
  rate_limited: CONNACK.NOT_AUTHORIZED,
  client_id_rejected: CONNACK.IDENTIFIER_REJECTED,
  store_unavailable: CONNACK.SERVER_UNAVAILABLE,
  session_limit: CONNACK.NOT_AUTHORIZED,
};

export interface HttpRefusal {
  status: number;
  reason: string;
}

/** SPEC §5 reason for an IP outside the token's `ips`. */
export const UNAUTHORIZED_LOCATION = 'using token from unauthorized location';

/**
 * SPEC §5: missing/unknown/expired 401, IP outside `ips` 401 with its fixed
 * reason, unreadable 401 (SPEC §2), over the brute-force limit 429, store down 503.
 * MQTT-only causes (will, client id, session limit) never reach REST; they map to 403 for completeness.
 */
export const HTTP_BY_CAUSE: Readonly<Record<RefusalCause, HttpRefusal>> = {
  bad_key: { status: 401, reason: 'unknown token' },
  expired: { status: 401, reason: 'token expired' },
  disabled: { status: 401, reason: 'token disabled' },
  ip_denied: { status: 401, reason: UNAUTHORIZED_LOCATION },
  token_unreadable: { status: 401, reason: 'stored token cannot be read' },
  rate_limited: { status: 429, reason: 'too many failed authentication attempts from this address, try again later' },
  store_unavailable: { status: 503, reason: 'token store unavailable, try again later' },
  no_mqtt_rights: { status: 403, reason: 'token has no MQTT rights' },
  will_denied: { status: 403, reason: 'will topic not allowed' },
  client_id_rejected: { status: 403, reason: 'client id not allowed for this token' },
  session_limit: { status: 403, reason: 'token limits.sessions reached' },
};

/** Log text of an MQTT refusal, by cause. */
export const LOG_REASON: Readonly<Record<RefusalCause, string>> = {
  bad_key: 'unknown token',
  expired: 'token expired',
  disabled: 'token disabled',
  ip_denied: 'address not in token ips',
  no_mqtt_rights: 'token has no MQTT rights',
  will_denied: 'will topic not allowed',
  token_unreadable: 'stored token cannot be read',
  rate_limited: 'too many failed attempts from this address',
  client_id_rejected: 'client id rejected',
  store_unavailable: 'token store unavailable',
  session_limit: 'token limits.sessions reached',
};
