"""The company's knowledge at catalogue scale (issue 18): read, chunked, indexed, searched.

sources (.md/.txt/.pdf) -> chunking (heading paths) -> embeddings (OpenAI) and
index_file (cached beside the knowledge) -> search (numpy cosine, BM25 fallback);
base decides at start between the whole knowledge and retrieval.

Nothing is imported here: agent/prompts.py reads the files through `sources` in the web
process too, which must not load numpy or the OpenAI client (tests/test_project.py).
"""
