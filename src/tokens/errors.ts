// The one error this model raises: a client-supplied token field is wrong.
// src/api turns it into a 400 with `message` as the reason (SPEC §5).

/** A token field breaks a SPEC §2/§3 rule. `field` is the path to it, e.g. `access.acl[3].topic`. */
export class TokenValidationError extends Error {
  override name = 'TokenValidationError';
  readonly field: string;

  constructor(field: string, problem: string) {
    super(`${field}: ${problem}`);
    this.field = field;
  }

  /** For fields that must not be there at all: the message names the field alone. */
  static unknownField(field: string): TokenValidationError {
    const error = new TokenValidationError(field, 'unknown field');
    error.message = `unknown field '${field}'`;
    return error;
  }

  /** For server-owned fields (id, key, created, accessed). */
  static readOnlyField(field: string): TokenValidationError {
    const error = new TokenValidationError(field, 'unknown field');
    error.message = `${field}: read-only field, set by the server`;
    return error;
  }
}
