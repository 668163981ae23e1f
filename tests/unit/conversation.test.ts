import { describe, expect, it } from 'vitest';
import { promptOf, withSystemPrompt, type ChatMessage } from '../../src/domain/conversation';

const user = (content: string): ChatMessage => ({ role: 'user', content });
const assistant = (content: string): ChatMessage => ({ role: 'assistant', content });

describe('promptOf', () => {
  it('is the turns before the last assistant turn', () => {
    // Arrange
    const messages = [user('hi'), assistant('hello'), user('how long should I rest?'), assistant('two minutes')];

    // Act
    const prompt = promptOf(messages);

    // Assert
    expect(prompt).toEqual([user('hi'), assistant('hello'), user('how long should I rest?')]);
  });

  it('keeps a system turn and stops before an answer that ends the row', () => {
    const system: ChatMessage = { role: 'system', content: 'Be brief.' };
    expect(promptOf([system, user('q'), assistant('a')])).toEqual([system, user('q')]);
  });

  it('is null when no assistant turn follows a first turn: there is nothing to ask again', () => {
    expect(promptOf([user('q')])).toBeNull();
    expect(promptOf([assistant('a'), user('q')])).toBeNull();
    expect(promptOf([])).toBeNull();
  });

  it('leaves the conversation it reads unchanged', () => {
    const messages = [user('q'), assistant('a')];
    promptOf(messages);
    expect(messages).toEqual([user('q'), assistant('a')]);
  });
});

describe('withSystemPrompt', () => {
  it("leads a conversation with the model's system prompt", () => {
    expect(withSystemPrompt([user('q')], 'Be brief.')).toEqual([{ role: 'system', content: 'Be brief.' }, user('q')]);
  });

  it("keeps the conversation's own system turn instead", () => {
    const own: ChatMessage[] = [{ role: 'system', content: 'Answer in French.' }, user('q')];
    expect(withSystemPrompt(own, 'Be brief.')).toEqual(own);
  });

  it('adds nothing when the model has no system prompt', () => {
    expect(withSystemPrompt([user('q')], null)).toEqual([user('q')]);
    expect(withSystemPrompt([user('q')], '')).toEqual([user('q')]);
  });
});
