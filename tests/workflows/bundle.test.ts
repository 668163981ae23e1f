import { mkdtemp, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { inject, describe, expect, it } from 'vitest';
import { bundleWorkflows, WORKFLOWS_PATH } from '../../src/temporal/worker';

const silent = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };

describe('workflow bundle', () => {
  it('bundles the workflow code without Node built-ins or I/O modules', async () => {
    const bundle = await bundleWorkflows();
    expect(bundle.code).toContain('TrainingPipeline');
    for (const forbidden of [
      'node_modules/pg/',
      'node_modules/kysely/',
      'node_modules/minio/',
      'node_modules/express/',
    ]) {
      expect(bundle.code).not.toContain(forbidden);
    }
  });

  it('fails to bundle workflow code that imports a Node built-in by accident', async () => {
    // Arrange: a workflow module that pulls in node:fs next to the real workflows
    const dir = await mkdtemp(path.join(inject('tmpRoot'), 'bad-workflow-'));
    const file = path.join(dir, 'index.ts');
    await writeFile(
      file,
      `import { readFileSync } from 'node:fs';\nexport * from ${JSON.stringify(WORKFLOWS_PATH.replace(/\.ts$/, ''))};\nexport async function Bad() { return readFileSync('/etc/hostname', 'utf8'); }\n`,
    );
    const errors: string[] = [];
    // Act
    const outcome = bundleWorkflowCode({
      workflowsPath: file,
      logger: { ...silent, error: (m: string) => errors.push(m) },
    });
    // Assert: the bundler refuses, and says which module was the problem
    await expect(outcome).rejects.toThrow(/Webpack finished with errors/);
    expect(errors.join('\n')).toMatch(/fs/);
  });
});
