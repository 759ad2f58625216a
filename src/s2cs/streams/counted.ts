// Refusals the table has counted (Refusals logs them at most once per interval), so that the rpc log need not.
import type { ScistreamError } from '../../protocol/errors.js';

const countedRefusals = new WeakSet<Error>();

export function counted(err: ScistreamError): ScistreamError {
  countedRefusals.add(err);
  return err;
}

/** Whether an error is a refusal Refusals has already counted and logs at most once per interval (so the rpc log need not). */
export function isCountedRefusal(err: unknown): boolean {
  return err instanceof Error && countedRefusals.has(err);
}
