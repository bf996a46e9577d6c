"""A byte-level BPE tokenizer trained on the world's own text, with a chat template.

Byte-level so that any text PPO passes around (including text the model never saw) can be
encoded and decoded losslessly. Like Llama's, it prepends BOS to plain text, so a corpus
sentence encoded on its own looks like the start of a pretraining document.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
SPECIAL_TOKENS = (BOS, EOS, PAD)

# "<|bos|>User: Q\nAssistant: A<|eos|>\n": plain-text role markers, like the Alpaca-style
# templates of many base models. The base model never saw them, so it does not answer after
# "Assistant:" (it rambles on); the words are ordinary tokens, so LoRA can learn the format
# without training new embeddings (a new special token's embedding is untrained, and LoRA
# does not touch embeddings). Assistant turns end with EOS (where generation stops) and are
# wrapped in {% generation %} so that return_assistant_tokens_mask (TRL's
# assistant_only_loss) works. The reply starts with its space, so "Assistant:" + " blue"
# tokenizes like running text. Tools, when given, are one line of names and arguments
# ("Tools: calculate(expression), sort_words(words)"), short for a 512-token context; a tool's
# answer is a "Tool:" line (the tool lessons' transcripts).
# Newlines are string literals: transformers renders with trim_blocks=True.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if tools %}{{ 'Tools:' }}{% for tool in tools %}"
    "{{ ' ' + tool['function']['name'] + '(' + (tool['function']['parameters']['properties'] | list | join(', ')) + ')' }}"
    "{% endfor %}{{ '\\n' }}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ 'System: ' + message['content'] + '\\n' }}"
    "{% elif message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ 'Assistant:' }}"
    "{% generation %}{{ ' ' + message['content'] + eos_token }}{% endgeneration %}{{ '\\n' }}"
    "{% elif message['role'] == 'tool' %}{{ 'Tool: ' + message['content'] + '\\n' }}"
    "{% else %}{{ raise_exception('chat roles must be system, user, assistant or tool, not ' + message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Raw `tokenizers` BPE over bytes; special tokens get the first ids (BOS=0, EOS=1, PAD=2)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return tok


def build_tokenizer(texts: Iterable[str], vocab_size: int, model_max_length: int) -> PreTrainedTokenizerFast:
    """The HF tokenizer saved with the model: BPE + special tokens + chat template."""
    hf = PreTrainedTokenizerFast(
        tokenizer_object=train_bpe(texts, vocab_size),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=model_max_length,
    )
    hf.chat_template = CHAT_TEMPLATE
    return hf
