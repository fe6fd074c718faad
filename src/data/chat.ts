// Renders chat messages with the model's Jinja chat template and marks which text spans are trained on.

import { Template } from '@huggingface/jinja';

export type ChatRole = 'system' | 'user' | 'assistant' | 'tool';
export const CHAT_ROLES: readonly ChatRole[] = ['system', 'user', 'assistant', 'tool'];

export interface ChatMessage {
  role: ChatRole;
  content: string;
}

/** A piece of the rendered conversation; `train` pieces are the assistant turns the loss is taken on. */
export interface Segment {
  text: string;
  train: boolean;
}

/** What rendering needs from a tokenizer. */
export interface ChatTemplateSource {
  chatTemplate: string | null;
  specialTokens: Record<string, string>;
}

/**
 * Used when the model ships no chat template (typical for base checkpoints). Each message is one
 * `role: content` line; an assistant turn ends with the EOS token text so the model learns to stop, and the
 * generation prompt is `assistant: `. No other special tokens, because a base vocabulary has none to spare.
 * Example: `user: hi\nassistant: hello<eos>\n`.
 */
export const FALLBACK_CHAT_TEMPLATE =
  "{% for message in messages %}{{ message['role'] + ': ' + message['content'] }}" +
  "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}";

/** A template that cannot render a conversation, or renders it in a way we cannot split into turns. */
export class ChatTemplateError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ChatTemplateError';
  }
}

// Parsing is the slow part and a run uses one template for every line.
const compiled = new Map<string, Template>();

export function renderChat(source: ChatTemplateSource, messages: ChatMessage[], addGenerationPrompt: boolean): string {
  const templateText = source.chatTemplate ?? FALLBACK_CHAT_TEMPLATE;
  let template = compiled.get(templateText);
  if (!template) {
    try {
      template = new Template(templateText);
    } catch (err) {
      throw new ChatTemplateError(`chat template does not parse: ${(err as Error).message}`, { cause: err });
    }
    compiled.set(templateText, template);
  }
  try {
    return template.render({
      ...source.specialTokens,
      // Copies: the interpreter must not see (or keep) our objects.
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      add_generation_prompt: addGenerationPrompt,
      // null, not undefined: templates test `tools is not none`, which an undefined value passes.
      tools: null,
      documents: null,
      // raise_exception is a library global (it throws an Error carrying the template's message) and cannot be
      // overridden here, so template-raised and interpreter errors surface alike, message intact.
    });
  } catch (err) {
    throw new ChatTemplateError(`chat template failed on this conversation: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The conversation as rendered by the template, split so that each assistant turn (its content and the
 * end-of-turn text that follows, e.g. `<|im_end|>\n`) is a `train: true` segment and everything else is not.
 *
 * Assistant turn i spans [len(render(messages[:i], gen=true)), len(render(messages[:i+1], gen=false))) of the
 * full render. That only holds when every such render is a prefix of the full one; templates that rewrite
 * earlier turns depending on what follows (e.g. dropping reasoning from all but the last turn) are rejected.
 */
export function chatSegments(source: ChatTemplateSource, messages: ChatMessage[]): Segment[] {
  const full = renderChat(source, messages, false);
  const segments: Segment[] = [];
  let pos = 0;
  for (let i = 0; i < messages.length; i++) {
    if (messages[i].role !== 'assistant') continue;
    const prefix = renderChat(source, messages.slice(0, i), true);
    const turn = renderChat(source, messages.slice(0, i + 1), false);
    if (!full.startsWith(prefix) || !full.startsWith(turn) || prefix.length < pos || turn.length < prefix.length) {
      throw new ChatTemplateError(
        `chat template is not prefix-stable at message ${i + 1} (assistant): rendering the conversation up to a turn ` +
          'does not give a prefix of the whole rendering, so the assistant spans cannot be located; ' +
          'use the prompt/completion or input_ids/labels form instead',
      );
    }
    push(segments, full.slice(pos, prefix.length), false);
    push(segments, full.slice(prefix.length, turn.length), true);
    pos = turn.length;
  }
  push(segments, full.slice(pos), false);
  return segments;
}

function push(segments: Segment[], text: string, train: boolean): void {
  if (text.length === 0) return;
  const last = segments[segments.length - 1];
  if (last && last.train === train) last.text += text;
  else segments.push({ text, train });
}
