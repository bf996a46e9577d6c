"""Retrieval for the RAG baseline: corpus loading, chunking, BM25, dense, fusion, a saved index.

Each module has one job; `index.py` ties them together and is what stages and the CLI use.
"""
