"""Knowledge building blocks without a gateway: sparse terms, parsing, chunking, both stores."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
from qdrant_client import QdrantClient

from homestack.errors import Conflict, NotFound
from homestack.knowledge.core import KnowledgeBase
from homestack.knowledge.ingest import sparse
from homestack.knowledge.ingest.chunk import chunk_blocks
from homestack.knowledge.ingest.parse import ParseError, parse
from homestack.knowledge.ingest.tokens import load_counter
from homestack.knowledge.stores.base import SearchSpec, StorePoint, point_id
from homestack.knowledge.stores.edge import EdgeStore
from homestack.knowledge.stores.qdrant_server import QdrantServerStore
from knowledge_fixtures.docs import HTML, MARKDOWN, PDF_PAGES, pdf_bytes

COUNTER = load_counter("minilm-l6-v2")


@pytest.mark.parametrize("words, stem", [
    (["running", "runs"], "run"), (["connection", "connections", "connected"], "connect"),
    (["studies", "study"], "studi"), (["happiness", "happy"], "happi"), (["class", "classes"], "class"),
])
def test_stemmer_maps_word_forms_together(words, stem):
    assert {sparse.stem(w) for w in words} == {stem}


def test_sparse_vectors_are_stable_and_saturate():
    assert sparse.terms("The cats are RUNNING in the garden") == ["cat", "run", "garden"]
    indices, values = sparse.document_vector(sparse.terms("cat cat cat cat dog"))
    assert indices == sparse.document_vector(["cat", "cat", "cat", "cat", "dog"])[0]  # crc32: same index in every run
    weights = dict(zip(indices, values))
    cat, dog = weights[sparse.query_vector("cat")[0][0]], weights[sparse.query_vector("dog")[0][0]]
    assert dog < cat < 4 * dog  # more occurrences weigh more, but far less than linearly
    assert sparse.query_vector("cat cats the") == ([indices[0]], [1.0])


def test_terms_split_names_and_ignore_question_words():
    assert sparse.terms("pthread_mutex_lock()") == ["pthread_mutex_lock", "pthread", "mutex", "lock"]
    assert sparse.terms("_exit") == ["_exit", "exit"]
    assert sparse.terms("How do I lock a mutex?") == sparse.terms("lock mutex") == ["lock", "mutex"]
    assert sparse.terms("shut down the socket") == ["shut", "down", "socket"]  # "down" means something here


def test_markdown_blocks_carry_heading_paths_and_exact_offsets():
    blocks = parse(MARKDOWN.encode(), "markdown", "garden.md")
    pests = next(b for b in blocks if "Aphids" in b.text)
    assert pests.heading == ("Garden guide", "Tomatoes", "Pests")
    assert MARKDOWN[pests.start:pests.start + len(pests.text)] == pests.text
    assert next(b for b in blocks if "Potatoes are" in b.text).heading == ("Garden guide", "Potatoes")


def test_html_keeps_text_and_headings_not_scripts():
    blocks = parse(HTML.encode(), "html", "bread.html")
    assert [b.heading for b in blocks] == [("Sourdough bread",), ("Sourdough bread", "Baking")]
    assert "999" not in " ".join(b.text for b in blocks)


def test_pdf_pages_and_outline_headings():
    blocks = parse(pdf_bytes(), "pdf", "handbook.pdf")
    assert [(b.page, b.heading) for b in blocks] == [(i + 1, (title,)) for i, (title, _) in enumerate(PDF_PAGES)]
    assert "450 operating hours" in blocks[1].text


def test_unparseable_file_error_names_it():
    with pytest.raises(ParseError, match=r"^broken\.pdf: cannot parse as pdf"):
        parse(b"%PDF-1.4 not really", "pdf", "broken.pdf")
    with pytest.raises(ParseError, match="binary content"):
        parse(b"\0\1\2", "text", "blob.txt")


def _long_markdown() -> str:
    rng = random.Random(7)
    words = "alpha beta gamma delta epsilon zeta theta kappa lambda sigma".split()
    paragraphs = [" ".join(" ".join(rng.choice(words) for _ in range(rng.randint(4, 30))).capitalize() + "."
                           for _ in range(rng.randint(1, 6))) for _ in range(25)]
    return "# One\n\n" + "\n\n".join(paragraphs[:15]) + "\n\n## Two\n\n" + "\n\n".join(paragraphs[15:]) + "\n"


def test_chunks_fit_in_tokens_follow_headings_and_overlap():
    text = _long_markdown()
    chunks = chunk_blocks(parse(text.encode(), "markdown", "x.md"), COUNTER, 60, 20)
    assert len(chunks) > 5
    assert [c.position for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.tokens <= 60 and len(COUNTER.offsets([c.text])[0]) <= 60
        source = text[c.start:c.end]
        assert " ".join(source.split()) == " ".join(c.text.split())  # offsets point at the chunk's text
        assert c.heading in (("One",), ("One", "Two"))
    assert any(b.start < a.end for a, b in zip(chunks, chunks[1:]) if a.heading == b.heading)  # overlap
    assert not any(b.start < a.end for a, b in zip(chunks, chunks[1:]) if a.heading != b.heading)
    # past its lead, each chunk holds only new text: together they are the document once (BM25's counts)
    assert " ".join(c.text[c.lead:] for c in chunks).split() == text.replace("## Two", "").replace("# One", "").split()
    assert any(c.lead for c in chunks) and all(b.lead == 0 for a, b in zip(chunks, chunks[1:]) if a.heading != b.heading)


def test_sentence_longer_than_a_chunk_is_cut_in_token_windows():
    text = " ".join(["word"] * 500)
    chunks = chunk_blocks(parse(text.encode(), "text", "x.txt"), COUNTER, 100, 10)
    assert [c.tokens for c in chunks] == [100] * 5


@pytest.fixture(params=["edge", "qdrant-local"])
def store(request, tmp_path):
    s = EdgeStore(tmp_path / "edge") if request.param == "edge" else QdrantServerStore(QdrantClient(path=str(tmp_path / "q")))
    yield s
    s.close()


def _points(texts: dict[str, list[str]], digest: str = "h1", seed: int = 0) -> list[StorePoint]:
    rng = np.random.default_rng(seed)
    out = []
    for source, chunks in texts.items():
        for i, text in enumerate(chunks):
            payload = {"source": source, "hash": digest, "position": i, "chunks": len(chunks), "text": text,
                       "tags": ["odd"] if i % 2 else []}
            out.append(StorePoint(point_id(source, digest, i), rng.random(8).tolist(),
                                  sparse.document_vector(sparse.terms(text)), payload))
    return out


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect")
def test_store_contract(store):
    store.create("kb", {"dimensions": 8, "embedding_model": "m"})
    with pytest.raises(Conflict):
        store.create("kb", {"dimensions": 8})
    with pytest.raises(NotFound, match="'nope' does not exist"):
        store.meta("nope")
    docs = {"a.md": ["cats chase mice", "dogs chase cats", "birds sing"], "b.md": ["bread needs flour", "ovens bake"]}
    store.upsert("kb", _points(docs))
    assert store.list() == ["kb"] and store.meta("kb")["embedding_model"] == "m"
    store.update_meta("kb", {**store.meta("kb"), "avg_terms": 3.0})
    assert store.meta("kb")["avg_terms"] == 3.0
    assert store.count("kb") == 5 and store.source_counts("kb") == {"a.md": 3, "b.md": 2}
    assert store.complete_documents("kb") == {"a.md": {"h1": 3}, "b.md": {"h1": 2}}
    top = store.query("kb", SearchSpec("sparse", 2, sparse=sparse.query_vector("flour")))
    assert [h.payload["text"] for h in top] == ["bread needs flour"] and len(top[0].dense) == 8
    query = np.random.default_rng(1).random(8).tolist()
    for mode in ("dense", "hybrid"):
        hits = store.query("kb", SearchSpec(mode, 3, dense=query, sparse=sparse.query_vector("cats")))
        assert len(hits) == 3
    only_b = store.query("kb", SearchSpec("dense", 5, dense=query, sources=["b.md"]))
    assert {h.payload["source"] for h in only_b} == {"b.md"}
    odd = store.query("kb", SearchSpec("dense", 5, dense=query, tags=["odd"]))
    assert {h.payload["position"] for h in odd} == {1}
    # a new version of a.md: written beside the old one, then the old one goes
    store.upsert("kb", _points({"a.md": ["cats sleep"]}, digest="h2"))
    assert store.count("kb", "a.md", except_hash="h2") == 3
    store.delete_source("kb", "a.md", except_hash="h2")
    assert store.source_counts("kb") == {"a.md": 1, "b.md": 2}
    assert sum(len(batch) for batch in store.export("kb", batch=2)) == 3
    store.drop("kb")
    assert store.list() == []


def test_collection_of_an_older_keyword_encoding_says_so(tmp_path):
    store = EdgeStore(tmp_path)
    store.create("old", {"dimensions": 8})  # made before collections recorded their encoding
    store.create("new", {"dimensions": 8, "sparse_encoding": sparse.ENCODING})
    kb = KnowledgeBase(None, store, None, COUNTER)
    old, new = asyncio.run(kb.describe("old")), asyncio.run(kb.describe("new"))
    assert old["sparse_encoding"] == 1 and "re-ingest into a new collection" in old["notice"]
    assert new["sparse_encoding"] == sparse.ENCODING and "notice" not in new
    store.close()
