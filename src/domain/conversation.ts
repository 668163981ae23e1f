// Conversations as apps send them, as they are stored and as models are asked: the one message type of the domain.

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/**
 * The conversation a model is asked with, led by the model's system prompt unless the conversation carries a system
 * turn of its own (or the model has none).
 */
export function withSystemPrompt(messages: ChatMessage[], systemPrompt: string | null): ChatMessage[] {
  return systemPrompt && messages[0]?.role !== 'system'
    ? [{ role: 'system', content: systemPrompt }, ...messages]
    : messages;
}

/**
 * The prompt of a conversation: its turns before the last assistant turn, the answer a model is asked to give again
 * (evaluation, parity). Null when no assistant turn follows a first turn: there is nothing to ask.
 */
export function promptOf(messages: readonly ChatMessage[]): ChatMessage[] | null {
  const last = messages.map((m) => m.role).lastIndexOf('assistant');
  return last > 0 ? messages.slice(0, last) : null;
}
