"""The knowledge service end to end: a real gateway, Qdrant Edge, the kb CLI and the HTTP API."""

from __future__ import annotations

import json
import threading

import openai
import pytest

from homestack.knowledge.ingest import sparse
from knowledge_fixtures.docs import write_corpus
from knowledge_fixtures.service import KnowledgeProcess


@pytest.fixture(scope="module")
def service(default_gateway, tmp_path_factory):
    ks = KnowledgeProcess(tmp_path_factory.mktemp("knowledge"), default_gateway.url)
    yield ks
    ks.stop()


@pytest.fixture(scope="module")
def docs(service, tmp_path_factory):
    """The test corpus ingested into collection 'docs' (plus a broken PDF, reported and skipped)."""
    folder = tmp_path_factory.mktemp("corpus")
    files = write_corpus(folder)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    result = service.kb("ingest", str(folder), "--collection", "docs", "--tag", "handbook", "--json")
    return folder, files, json.loads(result.stdout)


def test_ingest_reports_files_and_skips_the_unparseable_one(docs):
    folder, files, report = docs
    assert (report["added"], report["replaced"], report["skipped"]) == (4, 0, 0)
    assert [f["source"] for f in report["failed"]] == [str(folder / "broken.pdf")]
    assert "cannot parse as pdf" in report["failed"][0]["error"]


def test_second_ingest_skips_unchanged_files(service, docs):
    folder, _, _ = docs
    report = json.loads(service.kb("ingest", str(folder), "-c", "docs", "--json").stdout)
    assert (report["added"], report["skipped"], report["chunks"]) == (0, 4, 0)


def test_search_finds_the_pdf_page_with_citation_fields(service, docs):
    _, files, _ = docs
    for mode in ("hybrid", "dense", "sparse"):
        body = {"collection": "docs", "query": "How many operating hours between maintenance services?", "mode": mode}
        results = service.api("POST", "/search", json=body).json()["results"]
        top = results[0]
        assert (top["source"], top["page"], top["heading"]) == (str(files["pdf"]), 2, "Maintenance"), mode
        assert "450 operating hours" in top["snippet"] and top["start"] == 0 and top["end"] > 100
        assert top["tags"] == ["handbook"]


def test_search_filters_and_threshold(service, docs):
    _, files, _ = docs
    body = {"collection": "docs", "query": "water", "filters": {"source": [str(files["html"])]}}
    results = service.api("POST", "/search", json=body).json()["results"]
    assert results and {r["source"] for r in results} == {str(files["html"])}
    assert service.api("POST", "/search", json={**body, "filters": {"tags": ["nope"]}}).json()["results"] == []
    body = {"collection": "docs", "query": "aphids", "mode": "sparse", "score_threshold": 0.5}
    results = service.api("POST", "/search", json=body).json()["results"]
    assert [r["heading"] for r in results] == ["Garden guide > Tomatoes > Pests"]


def test_cli_search_prints_citations(service, docs):
    _, files, _ = docs
    out = service.kb("search", "sourdough starter", "-c", "docs", "-k", "1").stdout
    assert "bread.html, Sourdough bread" in out and "starter of flour" in out
    # The README's filters from the CLI: --source narrows to one file, --tag to tagged chunks.
    hits = json.loads(service.kb("search", "sourdough starter", "-c", "docs", "--mode", "hybrid",
                                 "--source", str(files["markdown"]), "--json").stdout)
    assert hits and {h["source"] for h in hits} == {str(files["markdown"])}
    none = json.loads(service.kb("search", "sourdough starter", "-c", "docs", "--tag", "nope", "--json").stdout)
    assert none == []


@pytest.mark.parametrize("method, path, body, status, code", [
    ("POST", "/search", {"collection": "nope", "query": "x"}, 404, "not_found"),
    ("POST", "/search", {"collection": "docs", "query": "x", "mode": "fuzzy"}, 400, None),
    ("POST", "/search", {"collection": "docs"}, 400, None),
    ("POST", "/collections", {"name": "bad name!"}, 400, None),
    ("POST", "/collections", {"name": "docs"}, 409, "conflict"),
    ("GET", "/nowhere", None, 404, "not_found"),
])
def test_errors_are_openai_shaped(service, docs, method, path, body, status, code):
    resp = service.api(method, path, json=body)
    assert resp.status_code == status
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code", "source"} and error["source"] == "knowledge"
    assert error["code"] == code and "\n" not in error["message"]


def test_malformed_json_is_400(service):
    resp = service.api("POST", "/search", content=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and "not valid JSON" in resp.json()["error"]["message"]


def test_cli_errors_are_one_line(service):
    result = service.kb("ask", "anything", "-c", "missing", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("homestack: collection 'missing' does not exist") and result.stderr.count("\n") == 1
    result = service.kb("stats", "--url", "http://127.0.0.1:9", check=False)
    assert result.returncode == 1 and result.stderr.startswith("homestack: cannot reach the knowledge service")


def test_changed_and_removed_files_with_sync(service, tmp_path):
    files = write_corpus(tmp_path / "sync")
    service.kb("sync", str(tmp_path / "sync"), "-c", "synced")
    files["text"].write_text("Meeting notes. The budget review is now in November.\n")
    files["html"].unlink()
    report = json.loads(service.kb("sync", str(tmp_path / "sync"), "-c", "synced", "--json").stdout)
    assert (report["replaced"], report["removed"], report["skipped"]) == (1, 1, 2)
    sources = service.api("GET", "/collections/synced/sources").json()["sources"]
    assert {s["source"] for s in sources} == {str(files[k]) for k in ("pdf", "markdown", "text")}
    assert all(s["complete"] for s in sources)
    body = {"collection": "synced", "query": "budget review month", "filters": {"source": [str(files["text"])]}}
    (hit,) = service.api("POST", "/search", json=body).json()["results"]
    assert "November" in hit["text"]


def test_searches_keep_working_during_ingest(service, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        (folder / f"note{i}.txt").write_text(f"Note {i}. " + "The robot arm moves boxes in the warehouse. " * 40)
    service.kb("create", "busy")
    service.kb("ingest", str(write_corpus(tmp_path / "seed")["pdf"]), "-c", "busy")
    errors, done = [], threading.Event()

    def search_loop():
        while not done.is_set():
            resp = service.api("POST", "/search", json={"collection": "busy", "query": "warranty years"})
            if resp.status_code != 200 or not resp.json()["results"]:
                errors.append(resp.text)

    searcher = threading.Thread(target=search_loop)
    searcher.start()
    try:
        report = json.loads(service.kb("ingest", str(folder), "-c", "busy", "--json").stdout)
    finally:
        done.set()
        searcher.join()
    assert report["added"] == 40 and errors == []


def test_ask_cites_the_right_file_and_page(service, docs):
    _, files, _ = docs
    body = {"collection": "docs", "question": "How often does the Zephyr arm need a maintenance service?",
            "max_tokens": 40}
    result = service.api("POST", "/ask", json=body).json()
    assert result["answer"]
    first = result["sources"][0]
    assert (first["path"], first["page"], first["heading"], first["n"]) == (str(files["pdf"]), 2, "Maintenance", 1)
    assert "450" in first["snippet"]
    assert set(result["timings"]) == {"retrieval_ms", "prompt_ms", "ttft_ms", "generation_ms"}
    assert 0 < result["usage"]["completion_tokens"] <= 40  # max_tokens honoured


def test_ask_says_so_when_nothing_is_relevant(service, docs):
    out = service.kb("ask", "Who won the football world cup in 1954?", "-c", "docs").stdout
    assert out.strip() == "I found nothing relevant to this question in the collection 'docs', so I cannot answer it."


def test_kb_model_chat_completions_streamed_and_not(service, docs):
    _, files, _ = docs
    client = openai.OpenAI(base_url=service.url + "/v1/knowledge", api_key=service.key)
    question = [{"role": "user", "content": "How long is the warranty on the Zephyr arm?"}]
    stream = client.chat.completions.create(model="kb:docs", messages=question, stream=True,
                                            max_completion_tokens=12, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert f"[1] {files['pdf']}, page 3, Warranty" in text
    assert 0 < chunks[-1].usage.completion_tokens <= 12  # OpenAI's newer name for max_tokens, honoured
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
    assert final.model_extra["sources"][0]["page"] == 3
    reply = client.chat.completions.create(model="kb:docs", messages=[{"role": "user", "content": "Who won the 1954 world cup?"}])
    assert "found nothing relevant" in reply.choices[0].message.content
    assert reply.model_extra["sources"] == []
    with pytest.raises(openai.BadRequestError, match="kb:<collection>"):
        client.chat.completions.create(model="smollm2", messages=question)


def test_collections_stats_and_delete(service, docs):
    service.kb("create", "scratch")
    names = [c["name"] for c in json.loads(service.kb("collections", "--json").stdout)]
    assert {"docs", "scratch"} <= set(names)
    stats = json.loads(service.kb("stats", "--json").stdout)
    assert stats["store"] == "qdrant-edge" and "minilm-l6-v2 tokenizer" in stats["tokenizer"]
    docs_info = next(c for c in stats["collections"] if c["name"] == "docs")
    assert (docs_info["sources"], docs_info["dimensions"]) == (4, 384)
    assert 5 < docs_info["avg_terms"] < 200  # BM25's average chunk length, learned at the first ingest
    assert docs_info["sparse_encoding"] == sparse.ENCODING and "notice" not in docs_info
    service.kb("delete", "scratch")
    assert service.api("GET", "/collections/scratch").status_code == 404


def test_unknown_embedding_model_is_a_clear_error(default_gateway, tmp_path):
    config = "knowledge:\n  embedding_model: no-such-model\n"
    ks = KnowledgeProcess(tmp_path / "ks", default_gateway.url, config=config)
    try:
        result = ks.kb("create", "x", check=False)
        assert result.returncode == 1
        assert "does not serve model 'no-such-model'" in result.stderr and result.stderr.count("\n") == 1
        assert "estimate" in ks.stderr()  # the tokenizer fallback is announced
    finally:
        ks.stop()
