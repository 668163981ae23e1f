import { describe, expect, it } from 'vitest';
import { pipelineConfigSchema, synthesisSpecSchema } from '../../src/domain/model-config';
import {
  cleanUserMessage,
  combinations,
  fillPrompt,
  sampleId,
  sampleIdPrefix,
  slotsOf,
  specHash,
} from '../../src/domain/synthesis';
import { externalId } from '../../src/ingest/text';

const spec = synthesisSpecSchema.parse({
  name: 'quiz',
  prompt: 'Ask a {level} question about {subject}.',
  slots: { subject: ['fractions', 'decimals', 'angles'], level: ['easy', 'hard'] },
  count: 10,
});

describe('synthesis specs', () => {
  it('walks every slot combination before any comes twice', () => {
    expect(combinations(spec)).toBe(6);
    const first = Array.from({ length: 6 }, (_, k) => JSON.stringify(slotsOf(spec, k)));
    expect(new Set(first).size).toBe(6);
    expect(slotsOf(spec, 6)).toEqual(slotsOf(spec, 0));
    expect(fillPrompt(spec.prompt, slotsOf(spec, 0))).toBe('Ask a easy question about fractions.');
  });

  it('hashes what a spec asks and of whom, not how many', () => {
    const h = specHash(spec, 'ollama:teacher');
    expect(specHash({ ...spec, count: 99 }, 'ollama:teacher')).toBe(h);
    expect(
      specHash({ ...spec, slots: { level: spec.slots.level!, subject: spec.slots.subject! } }, 'ollama:teacher'),
    ).toBe(h);
    expect(specHash({ ...spec, prompt: `${spec.prompt} Be brief.` }, 'ollama:teacher')).not.toBe(h);
    expect(specHash({ ...spec, temperature: 0.2 }, 'ollama:teacher')).not.toBe(h);
    expect(specHash(spec, 'incumbent:gpt')).not.toBe(h);
  });

  it('makes ids per sample that an app cannot take', () => {
    const h = specHash(spec, 't');
    expect(sampleId(h, 3)).toBe(`${sampleIdPrefix(h)}3`);
    expect(externalId.safeParse(sampleId(h, 3)).success).toBe(false);
    expect(externalId.safeParse('tuneloop:synthetic').success).toBe(false);
    expect(externalId.safeParse('user-42').success).toBe(true);
  });

  it('cleans what the teacher wrote as the user, and refuses nothing at all', () => {
    expect(cleanUserMessage('  "How do I add fractions?"  ')).toBe('How do I add fractions?');
    expect(cleanUserMessage(' " ')).toBeNull();
  });

  it.each([
    [{ prompt: 'Ask about {topic} please.', slots: {} }, 'prompt'],
    [{ prompt: 'Ask about anything at all.', slots: { topic: ['x'] } }, 'slots.topic'],
    [{ prompt: 'Ask about {topic} please.', slots: { topic: [] } }, 'slots.topic'],
    [{ prompt: 'Ask about {topic} please.', slots: { topic: ['x'] }, count: 0 }, 'count'],
  ])('refuses the bad spec %j, naming %s', (over, path) => {
    const r = synthesisSpecSchema.safeParse({ name: 's', count: 5, ...over });
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]!.path.join('.')).toBe(path);
  });

  it('refuses an incumbent teacher without an incumbent, and a spec name twice', () => {
    const teach = (teacher: unknown, specs: unknown[]) =>
      pipelineConfigSchema.safeParse({ synthesize: { teacher, specs } });
    const one = { name: 'a', prompt: 'Ask anything a user asks.', count: 1 };
    expect(teach({ provider: 'incumbent' }, [one]).error!.issues[0]!.path.join('.')).toBe('synthesize.teacher');
    expect(teach({ provider: 'ollama', model: 'qwen2.5:7b' }, [one, one]).error!.issues[0]!.path.join('.')).toBe(
      'synthesize.specs.1.name',
    );
    expect(teach({ provider: 'ollama', model: 'qwen2.5:7b' }, [one]).success).toBe(true);
  });
});
