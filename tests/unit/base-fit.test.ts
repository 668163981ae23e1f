import { describe, expect, it } from 'vitest';
import { adapterFitsBase } from '../../src/domain/base-fit';

describe('adapterFitsBase', () => {
  it('fits a run on the base the version was trained on, and no other', () => {
    expect(adapterFitsBase({ base_model: 'smollm2-135m-instruct' }, 'smollm2-135m-instruct')).toBe(true);
    expect(adapterFitsBase({ base_model: 'tiny-llama' }, 'smollm2-135m-instruct')).toBe(false);
    expect(adapterFitsBase({ base_model: '/models/llama-3-8b' }, '/models/llama-3.1-8b')).toBe(false);
  });

  it('takes a version with no recorded base to fit, as before bases were recorded', () => {
    expect(adapterFitsBase({ base_model: null }, 'tiny-llama')).toBe(true);
  });
});
