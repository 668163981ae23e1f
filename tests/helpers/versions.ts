import { readFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../../src/config';

/** A version pinned in scripts/versions.sh (what scripts/setup.sh installs), by its variable's name. */
export function pinnedVersion(name: string): string {
  const found = new RegExp(`^${name}=(\\S+)`, 'm').exec(
    readFileSync(path.join(REPO_ROOT, 'scripts/versions.sh'), 'utf8'),
  );
  if (!found) throw new Error(`${name} is not pinned in scripts/versions.sh`);
  return found[1]!;
}
