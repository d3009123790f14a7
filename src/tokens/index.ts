// The token model's public API: pure functions and data, no I/O (SPEC §2, §3).
// src/store and src/broker import from here.

export * from './types.js';
export { TokenValidationError } from './errors.js';
export { validateCreate, validatePatch, checkResult, withDefaults } from './validate.js';
export { isValid, isExpired, clockProblem, deadline, lastUse, touchInterval, type ClockProblem, type TokenTimes } from './validity.js';
export { matches, intersects, isValidFilter, isValidTopic, filterError, topicError, MAX_TOPIC_BYTES } from './topic.js';
export {
  substitutePlaceholders,
  isSafeClientId,
  hasPlaceholder,
  CLIENT_ID_PLACEHOLDER,
  TOKEN_ID_PLACEHOLDER,
  type SessionContext,
} from './placeholders.js';
export { compileRights, compileSharedRights, isBrokerTopic, isSysTopic, Rights, type RightsContext, type RightsDecision } from './rights.js';
export { TopicTrie, type MatchContext } from './topic-trie.js';
export { compileIpMasks, normalizeIp, type IpMatcher } from './ips.js';
export { isKeyShaped, KEY_MIN_LENGTH, KEY_MAX_LENGTH } from './key-shape.js';
export { childLimits, containmentFailure, filterCovers, type ChildLimits, type ContainmentFailure, type ParentAccess } from './containment.js';
export { compileClientIdMasks, parseClientIdMasks, type ClientIdMatcher } from './clientids.js';
