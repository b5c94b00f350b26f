"""The ``retrieve`` tool: BM25 keyword search (``bm25s``) over a small corpus.

A corpus is a JSONL file of ``{"id": ..., "text": ...}`` lines, a folder of ``.txt``/``.md`` files
(id = path relative to the folder), or documents given in Python. Every document is scored and
ties are broken by corpus order, so the same query always returns the same list.
"""

# No ``from __future__ import annotations`` here: the tool signature below closes over max_k.
import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from pedagogy.errors import ConfigError
from pedagogy.tools.base import Observation
from pedagogy.tools.function import FunctionTool

__all__ = ["Document", "Retriever", "load_corpus", "retrieve_tool"]

Document = dict[str, str]
_SUFFIXES = {".txt", ".md"}
_HOW = "pass path= a .jsonl file or a folder of .txt/.md files, or documents=[{'id', 'text'}, ...]"


def _from_jsonl(path: Path) -> list[Document]:
    docs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{path}:{number}: not a JSON line ({exc}); {_HOW}") from exc
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ConfigError(
                f'{path}:{number}: expected {{"id": ..., "text": "..."}}, got {line[:80]!r}'
            )
        docs.append({"id": str(record.get("id", number)), "text": record["text"]})
    return docs


def _from_folder(path: Path) -> list[Document]:
    files = sorted(
        (p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _SUFFIXES),
        key=lambda p: p.relative_to(path).as_posix(),
    )
    return [
        {
            "id": p.relative_to(path).as_posix(),
            "text": p.read_text(encoding="utf-8", errors="replace"),
        }
        for p in files
    ]


def _from_list(documents: Any) -> list[Document]:
    if not isinstance(documents, (list, tuple)):
        raise ConfigError(
            f"documents must be a list of {{'id', 'text'}} dicts, got {type(documents).__name__}"
        )
    docs = []
    for i, doc in enumerate(documents):
        if isinstance(doc, str):
            doc = {"id": str(i), "text": doc}
        if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
            raise ConfigError(
                f"documents[{i}] must be a string or a dict with a 'text' string, got {doc!r:.80}"
            )
        docs.append({"id": str(doc.get("id", i)), "text": doc["text"]})
    return docs


def load_corpus(path: str | Path | None = None, documents: Any = None) -> list[Document]:
    """The documents of a corpus; a ``ConfigError`` names the path when it is missing or empty."""
    if (path is None) == (documents is None):
        raise ConfigError(f"the retrieve corpus needs exactly one source; {_HOW}")
    if documents is not None:
        docs, where = _from_list(documents), "documents=[...]"
    else:
        where = Path(path).expanduser()
        if where.is_dir():
            docs = _from_folder(where)
        elif where.is_file():
            docs = _from_jsonl(where)
        else:
            raise ConfigError(f"retrieve corpus {str(where)!r} does not exist; {_HOW}")
    if not any(doc["text"].strip() for doc in docs):
        raise ConfigError(f"retrieve corpus {str(where)!r} has no documents with text; {_HOW}")
    return docs


class Retriever:
    """A BM25 index over a fixed list of documents."""

    def __init__(self, documents: list[Document]):
        import bm25s

        self._bm25s = bm25s
        self.documents = documents
        tokens = bm25s.tokenize([d["text"] for d in documents], stopwords="en", show_progress=False)
        self.index = bm25s.BM25()
        self.index.index(tokens, show_progress=False)

    def search(self, query: str, k: int = 3) -> list[tuple[Document, float]]:
        """The top ``k`` documents with a positive score, best first, ties in corpus order."""
        terms = self._bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)
        if not terms or not terms[0]:
            return []
        scores = self.index.get_scores(terms[0])
        ranked = sorted(range(len(self.documents)), key=lambda i: (-float(scores[i]), i))
        return [(self.documents[i], float(scores[i])) for i in ranked[:k] if scores[i] > 0]


def _line(doc: Document, max_chars: int) -> tuple[str, bool]:
    text = " ".join(doc["text"].split())
    cut = len(text) > max_chars
    return f"[{doc['id']}] {text[:max_chars]}{'...' if cut else ''}", cut


def retrieve_tool(
    path: str | Path | None = None,
    documents: Any = None,
    *,
    max_doc_chars: int = 500,
    max_k: int = 10,
    k: int = 3,
) -> FunctionTool:
    """The built-in ``retrieve`` tool over one corpus (see ``load_corpus``); ``k`` is how many
    documents a call returns when it does not say (1..``max_k``)."""
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= max_k:
        raise ConfigError(f"retrieve: k={k!r} must be an integer from 1 to max_k={max_k}")
    retriever = Retriever(load_corpus(path, documents))
    size = len(retriever.documents)
    default_k = k

    def retrieve(query: str, k: Annotated[int, Field(ge=1, le=max_k)] = default_k) -> Observation:
        """Find documents by keywords.

        Args:
            query: Keywords to search for, e.g. "capital of Zorv".
            k: How many documents to return.
        """
        hits = retriever.search(query, k)
        if not hits:
            return Observation(f"no documents match {query!r}", detail={"ids": [], "scores": []})
        lines, cuts = zip(*(_line(doc, max_doc_chars) for doc, _ in hits))
        return Observation(
            "\n".join(lines),
            truncated=any(cuts),
            detail={"ids": [d["id"] for d, _ in hits], "scores": [round(s, 4) for _, s in hits]},
        )

    description = (
        f"Search a corpus of {size} documents by keywords (BM25). Returns the best k documents, "
        "one per line as [id] text."
    )
    tool = FunctionTool(retrieve, name="retrieve", description=description)
    tool.retriever = retriever
    return tool
