/** A deploy step failed or cannot run: printed as is, exit 1. */
export class DeployError extends Error {
  override readonly name = 'DeployError';
}
