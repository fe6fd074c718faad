// Tests for chat rendering and the split into trained (assistant) and untrained segments.

import { describe, expect, it } from 'vitest';
import { ChatTemplateError, chatSegments, renderChat, type ChatMessage } from '../../src/data/chat.js';
import { CHATML_TEMPLATE } from './fixtures.js';

const chatml = { chatTemplate: CHATML_TEMPLATE, specialTokens: { eos_token: '<|endoftext|>' } };
const conversation: ChatMessage[] = [
  { role: 'system', content: 'be brief' },
  { role: 'user', content: 'hi' },
  { role: 'assistant', content: 'hello' },
  { role: 'user', content: 'bye' },
  { role: 'assistant', content: 'ciao' },
];

describe('chatSegments', () => {
  it('marks each assistant turn and its end-of-turn text as trained', () => {
    expect(chatSegments(chatml, conversation)).toEqual([
      { text: '<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n', train: false },
      { text: 'hello<|im_end|>\n', train: true },
      { text: '<|im_start|>user\nbye<|im_end|>\n<|im_start|>assistant\n', train: false },
      { text: 'ciao<|im_end|>\n', train: true },
    ]);
  });

  it('keeps trailing non-assistant messages untrained', () => {
    const segments = chatSegments(chatml, conversation.slice(0, 4));
    expect(segments.at(-1)).toEqual({ text: '<|im_start|>user\nbye<|im_end|>\n', train: false });
    expect(segments.map((s) => s.text).join('')).toBe(renderChat(chatml, conversation.slice(0, 4), false));
  });

  it('uses the documented plain fallback without a template', () => {
    const plain = { chatTemplate: null, specialTokens: { eos_token: '</s>' } };
    expect(renderChat(plain, conversation.slice(0, 2), true)).toBe('system: be brief\nuser: hi\nassistant: ');
    expect(chatSegments(plain, conversation.slice(1, 3))).toEqual([
      { text: 'user: hi\nassistant: ', train: false },
      { text: 'hello</s>\n', train: true },
    ]);
  });

  it('passes special tokens and tools=none to the template', () => {
    const source = {
      chatTemplate: "{{ bos_token }}{% if tools is not none %}TOOLS{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}",
      specialTokens: { bos_token: '<s>', eos_token: '</s>' },
    };
    expect(renderChat(source, conversation.slice(1, 2), false)).toBe('<s>hi');
  });

  it('surfaces raise_exception messages', () => {
    const strict = {
      chatTemplate:
        "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{{ m.content }}{% endfor %}",
      specialTokens: {},
    };
    expect(() => chatSegments(strict, conversation)).toThrow(ChatTemplateError);
    expect(() => chatSegments(strict, conversation)).toThrow(/System role not supported/);
  });

  it('rejects templates that are not prefix-stable', () => {
    const unstable = {
      chatTemplate: "{% for m in messages %}{% if loop.last %}LAST {% endif %}{{ m.content }};{% endfor %}",
      specialTokens: {},
    };
    expect(() => chatSegments(unstable, conversation)).toThrow(/not prefix-stable at message 3 \(assistant\)/);
  });

  it('reports templates that do not parse', () => {
    expect(() => renderChat({ chatTemplate: '{% for %}', specialTokens: {} }, conversation, false)).toThrow(
      /chat template does not parse/,
    );
  });
});
