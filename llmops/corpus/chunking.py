"""Token-aware chunking: whole sentences packed into chunks the embedding model can embed without truncation.

Sizes are counted in the embedding tokenizer's tokens. Each document is tokenized once (in batches of
documents); sentences map to token ranges through the tokenizer's character offsets, so packing is arithmetic on
token indices. Packing rules:

- Greedy: add sentences while the chunk stays within `max_tokens`.
- Paragraphs: a sentence that starts a paragraph closes the current chunk if that chunk is at least half full,
  so chunks tend to end where the text changes topic without wasting more than half a chunk.
- Overlap: a new chunk starts with the trailing whole sentences of the previous chunk that total at most
  `overlap_tokens` (never the previous chunk's first sentence, so consecutive chunks never contain one
  another). When no whole sentence fits, there is no overlap.
- A sentence longer than `max_tokens` starts a new chunk and is cut at token boundaries into windows of
  `max_tokens` that overlap by `overlap_tokens`; its last window goes on packing the sentences that follow.

The size guarantee holds for the chunk text on its own: WordPiece can tokenize a substring differently at its
edges (a word cut between "##" pieces), so every chunk is re-tokenized, and a document whose chunks come out
too long is chunked again with a budget reduced by the excess.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from typing import Iterable, NamedTuple

from llmops.corpus.documents import Chunk, Document, content_id
from llmops.errors import ChunkingError
from llmops.corpus.sentences import split_sentences

__all__ = ["chunk_documents", "max_chunk_tokens"]

_DOCS_PER_BATCH = 64  # documents tokenized per tokenizer call: fast-tokenizer batches run in parallel


def max_chunk_tokens(tokenizer, model_max_seq_length: int, passage_prefix: str, configured: int | None) -> int:
    """Tokens of chunk text the model can embed: its max sequence length less special tokens and the passage
    prefix. `configured` (chunking.max_tokens) may lower this, never raise it."""
    special = tokenizer.num_special_tokens_to_add()
    prefix = _count_tokens(tokenizer, [passage_prefix])[0] if passage_prefix else 0
    budget = model_max_seq_length - special - prefix
    limit = (
        f"the embedding model embeds at most {model_max_seq_length} tokens per passage, and {special} special "
        f"tokens plus {prefix} tokens of the passage prefix {passage_prefix!r} leave {budget} for chunk text"
    )
    if budget < 1:
        raise ChunkingError(f"{limit}: use a model with a longer max sequence length or a shorter passage prefix")
    if configured is None:
        return budget
    if configured > budget:
        raise ChunkingError(
            f"chunking.max_tokens is {configured}, but {limit}. Set chunking.max_tokens to {budget} or less, or "
            f"remove it to use {budget}."
        )
    return configured


def chunk_documents(docs: Iterable[Document], tokenizer, max_tokens: int, overlap_tokens: int) -> list[Chunk]:
    """Chunks of every document, in document order; each has n_tokens <= max_tokens when tokenized alone.

    `tokenizer` must be a Hugging Face fast tokenizer (character offsets are needed).
    """
    if not 0 <= overlap_tokens < max_tokens:
        raise ChunkingError(
            f"chunking.overlap_tokens ({overlap_tokens}) must be at least 0 and smaller than the chunk size "
            f"({max_tokens} tokens)"
        )
    if not getattr(tokenizer, "is_fast", False):
        raise ChunkingError(f"chunking needs a fast (Rust) tokenizer for character offsets; got {type(tokenizer)}")
    chunks: list[Chunk] = []
    docs = iter(docs)
    while batch := list(itertools.islice(docs, _DOCS_PER_BATCH)):
        chunks += _chunk_batch(batch, tokenizer, max_tokens, overlap_tokens)
    return chunks


class _Piece(NamedTuple):
    """Tokens [lo, hi) of the document: a sentence, or a window of a sentence that was too long."""

    lo: int
    hi: int
    paragraph_start: bool


def _chunk_batch(batch: list[Document], tokenizer, max_tokens: int, overlap: int) -> list[Chunk]:
    """Chunk a batch of documents: one tokenizer call for the documents, one per round of size checks."""
    encoded = tokenizer(
        [d.text for d in batch],
        return_offsets_mapping=True,
        add_special_tokens=False,
        verbose=False,  # documents are longer than the model's limit on purpose: no warning
    )["offset_mapping"]
    sentences = [_sentence_pieces(doc.text, offsets) for doc, offsets in zip(batch, encoded)]
    budgets = [max_tokens] * len(batch)
    spans: list[list[tuple[int, int]]] = [[] for _ in batch]
    counts: list[list[int]] = [[] for _ in batch]
    pending = list(range(len(batch)))
    while pending:
        for i in pending:
            ranges = _pack(sentences[i], budgets[i], min(overlap, budgets[i] - 1))
            spans[i] = [s for s in (_char_span(batch[i].text, encoded[i], lo, hi) for lo, hi in ranges) if s[0] < s[1]]
        flat = iter(_count_tokens(tokenizer, [batch[i].text[s:e] for i in pending for s, e in spans[i]]))
        for i in pending:
            counts[i] = list(itertools.islice(flat, len(spans[i])))
        # Rare: a chunk that re-tokenizes longer than its tokens in the document. Chunk that document again
        # with the budget reduced by the excess; the budget shrinks every round, so this ends.
        pending = [i for i in pending if max(counts[i], default=0) > max_tokens]
        for i in pending:
            budgets[i] -= max(counts[i]) - max_tokens
            if budgets[i] < 1:
                doc = batch[i]
                raise ChunkingError(
                    f"document {doc.doc_id} ({doc.source}) cannot be cut into chunks of {max_tokens} tokens"
                )
    return [chunk for doc, s, c in zip(batch, spans, counts) for chunk in _make_chunks(doc, s, c)]


def _make_chunks(doc: Document, spans: list[tuple[int, int]], counts: list[int]) -> list[Chunk]:
    return [
        Chunk(
            chunk_id=content_id(f"{doc.doc_id}:{start}:{end}"),
            doc_id=doc.doc_id,
            text=doc.text[start:end],
            start=start,
            end=end,
            n_tokens=n,
            ordinal=i,
            source=doc.source,
            title=doc.title,
            lang=doc.lang,
        )
        for i, ((start, end), n) in enumerate(zip(spans, counts))
    ]


def _sentence_pieces(text: str, offsets: list) -> list[_Piece]:
    """Sentences as token ranges. A token belongs to the sentence its first character is in; the ranges tile
    all tokens, so a run of sentences is one contiguous token range."""
    token_starts = [start for start, _ in offsets]
    spans = split_sentences(text)
    cuts = [bisect_left(token_starts, start) for start, _, _ in spans]
    ends = cuts[1:] + [len(offsets)]
    if cuts:
        cuts[0] = 0
    return [_Piece(lo, hi, para) for lo, hi, (_, _, para) in zip(cuts, ends, spans) if hi > lo]


def _pack(sentences: list[_Piece], max_tokens: int, overlap: int) -> list[tuple[int, int]]:
    """Token ranges of the chunks (the rules are in the module docstring)."""
    chunks: list[tuple[int, int]] = []
    current: list[_Piece] = []
    for sentence in sentences:
        size = sentence.hi - sentence.lo
        if size > max_tokens:
            if current:
                chunks.append((current[0].lo, current[-1].hi))
            *full, last = _windows(sentence, max_tokens, overlap)
            chunks += full
            current = [_Piece(*last, False)]
            continue
        filled = current[-1].hi - current[0].lo if current else 0
        if current and (filled + size > max_tokens or (sentence.paragraph_start and 2 * filled >= max_tokens)):
            chunks.append((current[0].lo, current[-1].hi))
            current = _overlap_tail(current, min(overlap, max_tokens - size))
        current.append(sentence)
    if current:
        chunks.append((current[0].lo, current[-1].hi))
    return chunks


def _windows(sentence: _Piece, max_tokens: int, overlap: int) -> list[tuple[int, int]]:
    windows, lo = [], sentence.lo
    while True:
        hi = min(lo + max_tokens, sentence.hi)
        windows.append((lo, hi))
        if hi == sentence.hi:
            return windows
        lo = hi - overlap


def _overlap_tail(chunk: list[_Piece], budget: int) -> list[_Piece]:
    """The longest run of trailing sentences, excluding the first, with at most `budget` tokens."""
    start = len(chunk)
    while start > 1 and chunk[-1].hi - chunk[start - 1].lo <= budget:
        start -= 1
    return chunk[start:]


def _char_span(text: str, offsets: list, lo: int, hi: int) -> tuple[int, int]:
    """Characters of tokens [lo, hi), without surrounding whitespace (some tokenizers' offsets include it)."""
    start, end = offsets[lo][0], offsets[hi - 1][1]
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _count_tokens(tokenizer, texts: list[str]) -> list[int]:
    if not texts:
        return []
    ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    return [len(x) for x in ids]
